"""``nucscale info SLIDE``: levels, sizes, pixel size, vendor and the backend used."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.errors import NucscaleError
from nucscale.io import open_slide, slide_info


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="Slide file, or DICOM WSI folder.")],
    mpp: Annotated[
        float | None, typer.Option(help="Pixel size in µm/px, overriding the file's.")
    ] = None,
) -> None:
    """Show what nucscale sees in a slide."""
    try:
        with open_slide(slide, mpp=mpp) as s:
            meta = slide_info(s)
    except NucscaleError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out = Console()  # results go to stdout; errors to stderr
    out.print(f"[bold]{meta['path']}[/bold]")
    out.print(f"backend: {meta['backend']}   vendor: {meta['vendor'] or '-'}")
    mpp_text = f"{meta['mpp']:.4g} µm/px" if meta["mpp"] else "unknown (pass --mpp)"
    out.print(f"pixel size: {mpp_text}")
    table = Table("level", "width", "height", "downsample", "µm/px")
    for i, lv in enumerate(meta["levels"]):
        lmpp = f"{meta['mpp'] * lv['downsample']:.4g}" if meta["mpp"] else "-"
        table.add_row(str(i), str(lv["width"]), str(lv["height"]), f"{lv['downsample']:.4g}", lmpp)
    out.print(table)
