"""``nucscale index ARCHIVE... --out INDEX.parquet``: one row per file of DICOM archives."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.errors import NucscaleError

if TYPE_CHECKING:
    from distributed import Client

    from nucscale.archive import IndexResult

log = logging.getLogger(__name__)
#: Files not indexed (skipped or errors) named one per line at most; the index holds all.
_MAX_LISTED = 20


@app.command()
def index(
    archives: Annotated[
        list[Path], typer.Argument(help="Archive folders or files, walked at any depth.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index to write (INDEX.parquet).")],
    layout: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            help="Also write a descriptive tree of links: 'flat DIR' gives the CBIS-DDSM "
            "method's Mass/Test/Mass-Test_P_00038_LEFT_CC_FULL.dcm, ..._CROP_1.dcm, "
            "..._MASK_1.dcm.",
            metavar="flat DIR",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of a running Dask scheduler to read headers on."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local worker processes (default: one per core).")
    ] = None,
    parallel_above: Annotated[
        int,
        typer.Option(
            help="Without --scheduler, start a local Dask cluster when more files than this "
            "need reading (fewer are read in this process)."
        ),
    ] = 2000,
) -> None:
    """Index DICOM archives: a row per file (headers, CBIS-DDSM roles and pairs, or why it
    was skipped); unchanged files keep their row when the index is written again."""
    if out.suffix != ".parquet":
        _fail(f"{out}: the index is a Parquet file; name it INDEX.parquet")
    if layout is not None and layout[0] != "flat":
        _fail(f"--layout {layout[0]}: the only layout is 'flat'")
    from nucscale.archive import build_index, list_files, write_flat

    try:
        files = list_files(archives)
        with _client_for(len(files), scheduler, workers, parallel_above) as client:
            result = build_index(archives, out, client=client)
        flat = write_flat(result.table, layout[1]) if layout is not None else None
    except NucscaleError as exc:
        _fail(str(exc))
    _print(result, out)
    if flat is not None and layout is not None:
        Console().print(
            f"flat layout: {flat.files} files with a role in the archive, "
            f"{flat.links} links in {layout[1]}"
        )


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _client_for(
    n_files: int, scheduler: str | None, workers: int | None, above: int
) -> AbstractContextManager[Client | None]:
    """The Dask client headers are read on: the given scheduler's, a local cluster's for a
    large archive, or none (read here)."""
    if scheduler is None and n_files <= above:
        return nullcontext()
    from nucscale.cluster import get_client

    return get_client(scheduler, workers, dashboard_address=None)


def _print(result: IndexResult, out: Path) -> None:
    df = result.table
    c = result.counts
    stdout = Console()
    stdout.print(
        f"{out}: {c.files} files ({c.read} read, {c.reused} unchanged since the last index); "
        f"{(df['status'] == 'ok').sum()} DICOM instances, {(df['status'] == 'skipped').sum()} "
        f"skipped, {(df['status'] == 'error').sum()} errors",
        soft_wrap=True,
    )
    table = Table("kind", "instances", "series")
    ok = df[df["status"] == "ok"]
    for kind, group in ok.groupby("kind"):
        table.add_row(str(kind), str(len(group)), str(group["series_uid"].nunique()))
    stdout.print(table)
    roles = ok["role"].value_counts()
    if len(roles):
        stdout.print(
            "CBIS-DDSM roles: "
            + ", ".join(f"{roles.get(r, 0)} {r}" for r in ("full", "crop", "mask"))
            + f"; {result.labels} summed labels"
        )
    listed = df[(df["status"] != "ok") | df["reason"].notna()]
    for _, row in listed.head(_MAX_LISTED).iterrows():
        stdout.print(f"{row['status']}: {row['path']}: {row['reason']}", soft_wrap=True)
    if len(listed) > _MAX_LISTED:
        stdout.print(f"... and {len(listed) - _MAX_LISTED} more (the index lists all)")
