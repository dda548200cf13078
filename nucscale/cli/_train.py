"""``nucscale train DATA --out CKPT``: train the U-Net on image + instance-label pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nucscale.cli._app import app, console, progress_bar
from nucscale.errors import NucscaleError


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Folder of <id>_image.png + <id>_labels.png pairs.")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file (written every N steps).")],
    steps: Annotated[int, typer.Option(help="Total optimizer steps.")] = 2000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --out.")] = False,
    patch: Annotated[int, typer.Option(help="Training patch side, px.")] = 256,
    batch: Annotated[int, typer.Option(help="Patches per step.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and patch sampling.")] = 0,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    scale_min: Annotated[float, typer.Option(help="Smallest zoom of a training patch.")] = 0.8,
    scale_max: Annotated[float, typer.Option(help="Largest zoom of a training patch.")] = 1.25,
    mpp: Annotated[
        float,
        typer.Option(
            "--mpp",
            help="Analysis pixel size, µm/px: every image is resampled to it from its own "
            "(index.json 'mpp', else estimated from its nuclei).",
        ),
    ] = 0.5,
    negatives: Annotated[
        list[Path] | None,
        typer.Option(
            "--negatives",
            help="Unlabelled brightfield slide whose bare glass serves as nucleus-free patches "
            "(repeatable).",
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from these U-Net weights (a fine-tune: fresh optimizer and schedule; "
            "the file's depth and width are used).",
        ),
    ] = None,
    he_share: Annotated[
        float, typer.Option("--he-share", help="Share of real H&E patches in a batch.")
    ] = 0.3,
    synthetic_share: Annotated[
        float,
        typer.Option(help="Share of fluorescence nuclei rendered as H&E patches in a batch."),
    ] = 0.32,
    glass_share: Annotated[
        float, typer.Option(help="Share of bare-glass patches (with --negatives) in a batch.")
    ] = 0.06,
    depth: Annotated[int, typer.Option(help="U-Net resolution levels.")] = 4,
    width: Annotated[int, typer.Option(help="U-Net channels at full resolution.")] = 8,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 100,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 2,
    export: Annotated[
        Path | None, typer.Option(help="Also write slim weights (no optimizer) here at the end.")
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(help="Tune the post-processing thresholds on the training images at the end."),
    ] = True,
    evaluate: Annotated[
        bool, typer.Option(help="Score the held-out images (PQ, AJI, Dice) at the end.")
    ] = True,
    size: Annotated[
        int, typer.Option(help="Mammograms (DATA an index): the network's square input, px.")
    ] = 256,
    heldout: Annotated[
        Path | None,
        typer.Option(help="Mammograms: an index of held-out mammograms to score (Dice, IoU)."),
    ] = None,
) -> None:
    """Train the U-Net: on a folder of labelled nucleus images (foreground, boundary and centre
    maps), or on an archive's index (INDEX.parquet from nucscale index: mammogram masses)."""
    if data.suffix == ".parquet":
        _mammograms(data, out, steps, batch, seed, lr, depth, width, threads, size, heldout)
        return
    from nucscale.train import TrainConfig, export_weights, tune_checkpoint
    from nucscale.train import train as run_training

    if steps < 1 or batch < 1 or patch < 16 or checkpoint_every < 1 or threads < 1:
        console.print("[red]error:[/red] --steps, --batch, --checkpoint-every, --threads >= 1")
        raise typer.Exit(2)
    if not 0 < scale_min <= scale_max:
        console.print("[red]error:[/red] need 0 < --scale-min <= --scale-max")
        raise typer.Exit(2)
    if not 0 < mpp < float("inf") or depth < 1 or width < 1:
        console.print("[red]error:[/red] need a finite --mpp > 0, --depth >= 1, --width >= 1")
        raise typer.Exit(2)
    shares = (he_share, synthetic_share, glass_share)
    if min(shares) < 0 or sum(shares) > 1:
        console.print(
            "[red]error:[/red] --he-share, --synthetic-share and --glass-share must be >= 0 "
            "and sum to at most 1 (the rest is fluorescence)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    cfg = TrainConfig(
        steps=steps,
        patch=patch,
        batch=batch,
        seed=seed,
        lr=lr,
        checkpoint_every=checkpoint_every,
        threads=threads,
        scale_min=scale_min,
        scale_max=scale_max,
        mpp=mpp,
        negatives=tuple(str(p) for p in negatives or ()),
        depth=depth,
        width=width,
        init=None if init is None else str(init),
        brightfield_share=he_share,
        synthetic_share=synthetic_share,
        glass_share=glass_share,
    )
    columns = (
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with progress_bar(*columns) as bar:
            task = bar.add_task("train", total=steps, loss=float("nan"))

            def report(step: int, loss: float) -> None:
                bar.update(task, completed=step, loss=loss)

            ck = run_training(data, out, cfg, resume=resume, progress=report)
        if tune:
            tuned = tune_checkpoint(data, out)
            extra = "".join(
                f", {label} >= {tuned[key]}"
                for key, label in (
                    ("dist_threshold", "marker centre distance"),
                    ("min_core", "instance centre-distance peak"),
                )
                if key in tuned
            )
            console.print(
                f"post-processing: foreground >= {tuned['fg_threshold']}, boundary >= "
                f"{tuned['boundary_threshold']}, markers >= {tuned['min_marker']:.0f} px"
                f"{extra} (training-image PQ {tuned['train_pq']:.3f})"
            )
        if export is not None:
            export_weights(out, export)
        held = list(ck["split"]["heldout"])
        if evaluate and held:
            _report_heldout(data, out, held)
    except (NucscaleError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"checkpoint {out} at step {ck['step']}" + (f"; weights {export}" if export else "")
    )


def _report_heldout(data: Path, weights: Path, held: list[str]) -> None:
    """Print the per-modality means of the trained model on the held-out images."""
    from rich.table import Table

    from nucscale.models.unet import UNetModel
    from nucscale.train._evaluate import evaluate_heldout

    result = evaluate_heldout(UNetModel(weights), data, held)
    table = Table(title=f"held-out images ({len(held)})")
    for col in ("modality", "images", "pq", "dq", "sq", "aji", "dice"):
        table.add_column(col)
    for mod, m in result["per_modality"].items():
        cells = [f"{m[k]:.3f}" for k in ("pq", "dq", "sq", "aji", "dice")]
        table.add_row(mod, f"{m['images']:.0f}", *cells)
    console.print(table)


def _mammograms(
    data: Path, out: Path, steps: int, batch: int, seed: int, lr: float, depth: int,
    width: int, threads: int, size: int, heldout: Path | None,
) -> None:  # fmt: skip
    from nucscale.cli._train_mammo import train_mammograms

    if steps < 1 or batch < 1 or threads < 1 or size < 32 or size % 2 ** (depth - 1):
        console.print(
            f"[red]error:[/red] need --steps, --batch, --threads >= 1 and a --size >= 32 that "
            f"is a multiple of {2 ** (depth - 1)} (depth {depth})"
        )
        raise typer.Exit(2)
    try:
        train_mammograms(data, out, steps=steps, batch=batch, seed=seed, lr=lr, depth=depth,
                         width=width, threads=threads, size=size, heldout=heldout)  # fmt: skip
    except (NucscaleError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
