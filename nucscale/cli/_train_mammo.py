"""``nucscale train INDEX.parquet``: the mammogram mass U-Net on an index's (preprocessed
mammogram, summed mask) pairs; Dice and IoU per image on the training and held-out indexes."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nucscale.cli._app import console, progress_bar


def train_mammograms(
    index: Path,
    out: Path,
    *,
    steps: int,
    batch: int,
    seed: int,
    lr: float,
    depth: int,
    width: int,
    threads: int,
    size: int,
    heldout: Path | None,
) -> None:
    """Train, write the weights to ``out``, print the scores (raises NucscaleError)."""
    from nucscale.archive import read_index
    from nucscale.train._mammo import load_pairs, save_mammo_weights, score, train_mammo

    pairs = load_pairs(read_index(index), size, index)
    columns = (
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with progress_bar(*columns) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"))
        net = train_mammo(
            pairs, steps=steps, batch=batch, lr=lr, depth=depth, width=width, seed=seed,
            threads=threads, progress=lambda s, loss: bar.update(task, completed=s, loss=loss),
        )  # fmt: skip
    save_mammo_weights(net, out, size, str(index))
    sets = [("training", index, pairs)]
    if heldout is not None:
        sets.append(("held out", heldout, load_pairs(read_index(heldout), size, heldout)))
    for name, source, these in sets:
        scores = score(net, these)
        table = Table(title=f"{name}: {source} ({len(these)} mammograms)")
        table.add_column("mammogram", overflow="fold")
        for col in ("dice", "iou"):
            table.add_column(col)
        for uid, dice, iou in scores:
            table.add_row(uid, f"{dice:.3f}", f"{iou:.3f}")
        mean_dice = sum(s[1] for s in scores) / len(scores)
        mean_iou = sum(s[2] for s in scores) / len(scores)
        table.add_row("mean", f"{mean_dice:.3f}", f"{mean_iou:.3f}")
        console.print(table)
    console.print(f"weights {out} (mammogram mass U-Net, {size} px input)")
