"""``nucscale export`` and ``nucscale query``: the results in other tools' formats, and SQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.errors import NucscaleError

if TYPE_CHECKING:
    from nucscale.query import Results

stdout = Console()
_OUTLINE = 60  # characters of an outline's WKT shown in the terminal


def _fail(exc: NucscaleError) -> typer.Exit:
    """Print ``exc`` as one line; the exit (code 2) for the caller to raise."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _open(out: Path) -> Results:
    from nucscale.query import open_results

    try:
        return open_results(out)
    except NucscaleError as exc:
        raise _fail(exc) from None


def _check_ids(ids: list[str] | None) -> None:
    """Refuse (exit 2, one line) any ``--slide`` that is not a valid slide id."""
    from nucscale.store import check_slide_id

    try:
        for sid in ids or []:
            check_slide_id(sid, "--slide")
    except NucscaleError as exc:
        raise _fail(exc) from None


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Output folder of nucscale run.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="qupath-geojson, hovernet-json or csv.")
    ],
    slide: Annotated[
        list[str] | None, typer.Option(help="Slide id to export (repeatable; default: all).")
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option(help="File (one slide) or folder to write to (default: OUT/exports)."),
    ] = None,
) -> None:
    """Export nucleus tables for QuPath (GeoJSON), HoVer-Net's scripts (JSON) or spreadsheets.
    In QuPath, a slide with cell classes (nucscale classify predict) shows them."""
    from nucscale.store import read_classes
    from nucscale.store._export import FORMATS, export_slide

    if format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    _check_ids(slide)
    res = _open(out)
    try:
        ids = slide or res.slide_ids()
    except NucscaleError as exc:
        raise _fail(exc) from None
    if not ids:
        console.print(f"[red]error:[/red] {out}: no finished slide to export")
        raise typer.Exit(2)
    single_file = to is not None and len(ids) == 1 and to.suffix != ""
    folder = (to if to is not None and not single_file else out / "exports").resolve()
    table = _folding_table("slide", "nuclei", "file")
    errors: list[str] = []
    for sid in ids:
        dest = to if single_file and to is not None else folder / f"{sid}{FORMATS[format]}"
        try:
            classes = read_classes(out, sid) if format == "qupath-geojson" else None
            n = export_slide(res.table_path(sid), format, dest, sid, classes)
            table.add_row(escape(sid), str(n), escape(str(dest)))
        except (NucscaleError, OSError) as exc:
            table.add_row(escape(sid), "", "[red]failed[/red]")
            errors.append(f"[red]error:[/red] {escape(sid)}: {escape(str(exc))}")
    console.print(table)
    for line in errors:  # whole, below the table: an error is never cut to fit a column
        console.print(line, highlight=False, soft_wrap=True)
    if errors:
        raise typer.Exit(1)


def _folding_table(*columns: str) -> Table:
    """A table whose long cells wrap onto more lines (a path, an id) instead of being cut."""
    table = Table(*columns)
    for col in table.columns:
        col.overflow = "fold"
    return table


@app.command()
def query(
    out: Annotated[Path, typer.Argument(help="Output folder of nucscale run.")],
    sql: Annotated[
        str,
        typer.Argument(
            help="SQL over the views nuclei, slides, features, classes, regions and mammograms "
            "(DuckDB)."
        ),
    ],
    to: Annotated[
        Path | None, typer.Option(help="Write the result to this file instead of printing.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="csv or parquet (default: from --to's suffix)."),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows printed at most.")] = 50,
) -> None:
    """Run SQL over the results: views nuclei (one row per nucleus, slide_id included) and
    slides (one row per slide), and features, classes (nucscale classify predict), regions
    and mammograms where written. Prints a table, or writes --to FILE as CSV or Parquet.

    The SQL reads those views and nothing else: reading, writing or listing other files,
    network access and changing settings are refused (exit code 2)."""
    import duckdb

    from nucscale.query._write import RESULT_FORMATS, write_relation

    kind = format or (to.suffix.lstrip(".").lower() if to is not None else None)
    if to is not None and kind not in RESULT_FORMATS:
        raise typer.BadParameter("write csv or parquet (or name the file .csv/.parquet)",
                                 param_hint="--format")  # fmt: skip
    res = _open(out)
    try:
        rel = res.sql(sql)
        if rel is None:  # a statement without a result (e.g. SET VARIABLE)
            return
        if to is not None and kind is not None:
            n = write_relation(rel, to, kind)
            console.print(f"wrote {escape(str(to))} ({n} rows)", highlight=False, soft_wrap=True)
            return
        cols = rel.columns
        rows = rel.fetchmany(max_rows + 1)
    except NucscaleError as exc:
        raise _fail(exc) from None
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        console.print(
            f"[red]error:[/red] query failed: {escape(first)}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    finally:
        res.close()
    if len(cols) * 12 > stdout.width:  # too wide for columns: one block per row
        for i, row in enumerate(rows[:max_rows]):
            stdout.print(f"[bold]-- row {i + 1}[/bold]")
            for name, value in zip(cols, row, strict=True):
                stdout.print(f"{name}: {_cell(value)}", highlight=False)
    else:
        table = _folding_table(*cols)
        for row in rows[:max_rows]:
            table.add_row(*(_cell(v) for v in row))
        stdout.print(table)
    if not rows:
        console.print("0 rows")
    elif len(rows) > max_rows:
        console.print(f"(more than {max_rows} rows; use --max-rows or --to FILE)")


def _cell(value: object) -> str:
    """A value as printed: whole (long text wraps in its column), except an outline (WKB),
    shown as the start of its WKT: a thousand vertices help no one in a terminal."""
    if isinstance(value, bytes | bytearray):  # an outline: WKB
        raw = bytes(value)
        try:
            import shapely

            text = shapely.from_wkb(raw).wkt
        except Exception:  # not WKB after all: show the bytes
            text = raw.hex()
        return escape(text if len(text) <= _OUTLINE else text[: _OUTLINE - 1] + "…")
    return "" if value is None else escape(str(value))


@app.command()
def report(
    out: Annotated[Path, typer.Argument(help="Output folder of nucscale run.")],
    slide: Annotated[
        list[str] | None, typer.Option(help="Only these slide ids (repeatable; default: all).")
    ] = None,
) -> None:
    """QC report: OUT/report/index.html with the per-slide table, counts and feature
    distributions per type, and for each slide a thumbnail (tissue outline, nuclei coloured by
    type) and a full-resolution crop."""
    from nucscale.report import build_report

    _check_ids(slide)
    _open(out).close()  # a clear error for a folder that is not a run's output
    try:
        index = build_report(out, slide)
    except NucscaleError as exc:
        raise _fail(exc) from None
    console.print(f"wrote {index}")
