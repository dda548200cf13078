"""``nucscale run INPUT... --out DIR``: segment and measure every nucleus of a cohort."""

from __future__ import annotations

import atexit
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nucscale.cli import _app
from nucscale.cli._app import app, console, progress_bar
from nucscale.cli._cluster_options import (
    AccountOption,
    ClusterOption,
    ClusterSpecOption,
    CoresOption,
    ImageOption,
    JobExtraOption,
    JobWaitOption,
    MaxJobsOption,
    MemoryOption,
    MinJobsOption,
    QueueOption,
    WalltimeOption,
    remote,
)
from nucscale.cli._precheck import check_out, missing_inputs
from nucscale.cli._read_options import ChannelOption, IntensityOption, ZOption, read_options
from nucscale.cli._run_archive import ModalityOption, PatientOption, SeriesOption
from nucscale.config import Settings
from nucscale.errors import ConfigError, NucscaleError

if TYPE_CHECKING:
    from nucscale.store import ManifestRow

#: Reasons printed at most when no input can be processed.
_MAX_REASONS = 20
#: Skipped slide ids named at most in the line that announces them (the table names all).
_MAX_SKIPPED = 10


@app.command()
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Slides: files, DICOM folders, glob patterns, or a CSV with a 'path' column."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of a running Dask scheduler (tcp://host:8786); default: local."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local worker processes (default: one per core).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Threads per local worker for the network and numeric kernels (default 1; "
            "network outputs may round differently with another thread count)."
        ),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(help="Pixel size of the slides in µm/px, for files that do not record it."),
    ] = None,
    analysis_mpp: Annotated[
        float | None,
        typer.Option(
            help="Pixel size to analyse at, µm/px (default: the model's own, else 0.5; "
            "required for a bioimage.io package that declares none)."
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            help="Tile core size in analysis pixels (default: the segmenter's own, 2048 for "
            "networks, 1024 for the classical baseline)."
        ),
    ] = None,
    halo: Annotated[
        int | None, typer.Option(help="Context around each tile (default: segmenter's minimum).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "--segmenter",
            help="Segmenter: unet (default, shipped weights), baseline (weights-free H&E), "
            "hovernet (with --weights CHECKPOINT), bioimageio (with --weights PACKAGE: a "
            "bioimage.io model folder, YAML or .zip) or redcells (weights-free red blood "
            "cells of a stained smear, at 0.25 µm/px).",
        ),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights of a network segmenter (default: shipped ones).")
    ] = None,
    weights_format: Annotated[
        str | None,
        typer.Option(
            help="Weights to run from a bioimage.io package: torchscript or onnx (default: "
            "onnx on the CPU when the package has it, else torchscript)."
        ),
    ] = None,
    cpu_precision: Annotated[
        str | None,
        typer.Option(
            help="The U-Net's arithmetic on CPU workers: auto (bfloat16 where the CPU does it "
            "natively: AVX512-BF16 or AMX; else float32), float32 or bfloat16. On a GPU it "
            "runs in bfloat16."
        ),
    ] = None,
    cpu_runtime: Annotated[
        str | None,
        typer.Option(
            help="What runs the U-Net or HoVer-Net on CPU workers: auto (OpenVINO where "
            "installed, else torch), openvino or torch. On a GPU torch runs it."
        ),
    ] = None,
    dashboard: Annotated[
        str, typer.Option(help="Dashboard address of the local cluster.")
    ] = ":8787",
    tissue: Annotated[
        str | None,
        typer.Option(
            help="Tissue detection: auto (brightfield or fluorescence, from the slide), "
            "brightfield, fluorescence, or none (every tile)."
        ),
    ] = None,
    gpu: Annotated[
        bool,
        typer.Option(
            help="GPU workers: locally one worker per GPU (the network) beside --workers CPU "
            "workers (the rest; default: the cores left over), or with --cluster one GPU per job."
        ),
    ] = False,
    save_image: Annotated[
        bool,
        typer.Option(help="Also write the analysed image as OME-Zarr (OUT/images/<id>.zarr)."),
    ] = False,
    features: Annotated[
        str | None,
        typer.Option(
            help="morphology (default: the nucleus table) or full: also CellProfiler-style "
            "intensity, texture, shape and neighbourhood measurements in OUT/features."
        ),
    ] = None,
    channel: ChannelOption = None,
    intensity_range: IntensityOption = None,
    z: ZOption = None,
    modality: ModalityOption = None,
    series: SeriesOption = None,
    patient: PatientOption = None,
    cluster: ClusterOption = None,
    cores: CoresOption = None,
    memory: MemoryOption = None,
    queue: QueueOption = None,
    account: AccountOption = None,
    walltime: WalltimeOption = None,
    min_jobs: MinJobsOption = 1,
    max_jobs: MaxJobsOption = 4,
    job_extra: JobExtraOption = None,
    job_wait: JobWaitOption = 3600.0,
    cluster_spec: ClusterSpecOption = None,
    image: ImageOption = None,
) -> None:
    """Find and measure every nucleus; write OUT/nuclei (GeoParquet), OUT/labels (OME-Zarr),
    OUT/slides.parquet and OUT/manifest.parquet."""
    # the pipeline is imported here, after the arguments are parsed: `--help` and the first
    # checks do not wait for Dask, torch and the readers to load
    try:
        if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"--mpp must be a positive number of µm per pixel, got {mpp}")
        check_out(out)
        workers_at = remote(
            cluster, out, cores=cores, memory=memory, queue=queue, account=account,
            walltime=walltime, min_jobs=min_jobs, max_jobs=max_jobs, job_extra=job_extra,
            job_wait=job_wait, gpu=gpu, spec=cluster_spec, image=image,
        )  # fmt: skip
        quick = [] if scheduler is not None else missing_inputs(inputs)
    except NucscaleError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    if quick:
        _refuse(quick)
    local_cpu = scheduler is None and workers_at is None and not gpu and (threads or 1) > 0
    if _app.IS_COMMAND and local_cpu:
        # local workers fork from a server that imports their libraries during the checks
        from nucscale.cluster._forks import start_fork_server, stop_fork_server
        from nucscale.contracts import WORKER_MODULES

        if start_fork_server(WORKER_MODULES, threads or 1):
            # ended with the command, whichever way it ends (the cluster has closed by then)
            atexit.register(stop_fork_server)
    from nucscale.cli._run_archive import (
        announce_skipped,
        mammogram_weights,
        show_mammograms,
        split_inputs,
    )
    from nucscale.pipeline import resolve_inputs
    from nucscale.pipeline._preflight import unusable_inputs

    try:  # the checks that need no model come first
        mammo_weights, weights = mammogram_weights(weights)
        settings = Settings.from_env().replace(
            mpp=analysis_mpp,
            tile=tile,
            halo=halo,
            segmenter=model,
            tissue=tissue,
            weights=str(weights.resolve()) if weights else None,
            weights_format=weights_format,
            cpu_precision=cpu_precision,
            cpu_runtime=cpu_runtime,
            save_image=save_image or None,
            features=features,
        )
        options = read_options(channel, intensity_range, z)
        plain, archive = split_inputs(inputs, modality, series, patient, mpp, options)
        slides, rejected = resolve_inputs(plain, mpp, options) if plain else ([], [])
        slides += archive.slides
        if archive.mammograms and mammo_weights is None:
            archive.skip_mammograms()
        # a remote cluster's workers may see other files than this machine: theirs to judge
        reasons = unusable_inputs(slides, rejected) if scheduler is None else []
        if not reasons:
            from nucscale.pipeline._plan import check_segmenter

            check_segmenter(settings)
    except NucscaleError as exc:
        _error(str(exc))  # one line
        raise typer.Exit(2) from None
    if reasons:
        _refuse(reasons)
    announce_skipped(archive)
    if not (slides or rejected or archive.mammograms):
        _refuse(["no whole-slide image or mammogram to process in the inputs"])
    from nucscale.cluster import get_client
    from nucscale.pipeline import run_cohort
    from nucscale.store._lock import out_lock

    t0 = time.perf_counter()
    skipped: list[str] = []
    if workers_at is not None:
        from nucscale.cluster._jobqueue import log_folder

        logs = "kubectl logs" if workers_at.kind == "kubernetes" else f"logs in {log_folder(out)}"
        what = "kubernetes pods" if workers_at.kind == "kubernetes" else f"{workers_at.kind} jobs"
        console.print(f"workers: {what}, {min_jobs} to {max_jobs}, {logs}", soft_wrap=True)
    try:
        # OUT's run lock before the cluster starts: a second run on OUT fails at once
        with (
            out_lock(out),
            get_client(
                scheduler,
                workers,
                threads=threads,
                dashboard_address=dashboard,
                gpu=gpu and workers_at is None,
                remote=workers_at,
            ) as client,
        ):
            if client.dashboard_link:
                console.print(f"dashboard: {client.dashboard_link}", soft_wrap=True)
            with progress_bar(
                TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            ) as bar:
                task = bar.add_task("run", total=None)
                rows = (
                    run_cohort(
                        client,
                        slides,
                        rejected,
                        settings,
                        out,
                        progress=lambda d, n: bar.update(task, completed=d, total=n),
                        on_skip=lambda ids: _skipped(ids, skipped),
                    )
                    if slides or rejected
                    else []
                )
                mammograms = archive.run_mammograms(client, mammo_weights, out)
    except NucscaleError as exc:
        _error(str(exc))  # one line
        raise typer.Exit(2) from None
    if rows:
        _show(rows, set(skipped))
    m_failed = show_mammograms(mammograms)
    failed = sum(r.status != "done" for r in rows)
    suspicious = sum(r.status == "done" and bool(r.qc_flags) for r in rows)
    flagged = f"; {suspicious} done but flagged by QC (see `nucscale report`)" if suspicious else ""
    earlier = f" ({len(skipped)} of them in an earlier run)" if skipped else ""
    if rows or not mammograms:
        console.print(
            f"{len(rows) - failed} done{earlier}, {failed} failed in "
            f"{time.perf_counter() - t0:.1f} s{flagged}; results in {out}",
            soft_wrap=True,
        )
    if failed or m_failed:
        raise typer.Exit(1)


def _refuse(reasons: list[str]) -> None:
    """Print why no input can be processed (at most :data:`_MAX_REASONS` lines); exit 2."""
    for reason in reasons[:_MAX_REASONS]:
        _error(reason)
    if len(reasons) > _MAX_REASONS:
        _error(f"... and {len(reasons) - _MAX_REASONS} more")
    if len(reasons) > 1:
        _error(f"none of the {len(reasons)} inputs can be processed; nothing was run")
    raise typer.Exit(2)


def _error(line: str) -> None:
    """``error: <line>`` on one line, whatever a library put into the message."""
    line = "; ".join(part.strip() for part in line.splitlines() if part.strip())
    console.print(Text("error: ", style="red") + Text(line), soft_wrap=True, highlight=False)


def _skipped(ids: list[str], into: list[str]) -> None:
    """Say which slides a rerun skips, before the run starts (and remember them)."""
    into.extend(ids)
    named = ", ".join(ids[:_MAX_SKIPPED])
    more = f" and {len(ids) - _MAX_SKIPPED} more" if len(ids) > _MAX_SKIPPED else ""
    console.print(
        Text(f"skipped {len(ids)} slide(s) already done with these settings: {named}{more}"),
        soft_wrap=True,
        highlight=False,
    )


def _show(rows: list[ManifestRow], skipped: set[str]) -> None:
    """The cohort as a table (slide id and file name never cut: long ones fold), then each
    error and QC flag on its own line below it, whole, with the slide's path shortened to the
    file name the table shows (the manifest keeps the full path)."""
    table = Table("slide", "file", "status", "nuclei", "tissue mm²", "seconds")
    for col in table.columns[:2]:
        col.overflow = "fold"
    notes: list[Text] = []
    for r in rows:
        if r.status != "done":
            status = Text("failed", style="red")
        elif r.slide_id in skipped:
            status = Text("done earlier", style="green")
        elif r.qc_flags:
            status = Text("done, suspicious", style="yellow")
        else:
            status = Text("done", style="green")
        table.add_row(
            Text(r.slide_id),
            Text(Path(r.path).name),
            status,
            "" if r.nuclei is None else str(r.nuclei),
            "" if r.tissue_mm2 is None else f"{r.tissue_mm2:.2f}",
            "" if r.wall_s is None else f"{r.wall_s:.1f}",
        )
        note = r.error or r.qc_flags
        if note:
            style = "red" if r.status != "done" else "yellow"
            notes.append(Text(f"  {r.slide_id}: ", style=style) + Text(_without_path(note, r.path)))
    console.print(table)
    for line in notes:
        console.print(line, soft_wrap=True, highlight=False)


def _without_path(message: str, path: str) -> str:
    """``message`` without its leading ``path: `` (the table shows the file)."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
