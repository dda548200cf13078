"""``nucscale info SLIDE``: levels, sizes, pixel size, vendor and the backend used."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.cli._read_options import ChannelOption, IntensityOption, ZOption, read_options
from nucscale.errors import NucscaleError


@app.command()
def info(
    slide: Annotated[
        Path,
        typer.Argument(
            help="Slide file, DICOM WSI folder or OME-Zarr folder; or a bioimage.io model "
            "package (folder, YAML or .zip) for --model bioimageio."
        ),
    ],
    mpp: Annotated[
        float | None, typer.Option(help="Pixel size in µm/px, overriding the file's.")
    ] = None,
    channel: ChannelOption = None,
    intensity_range: IntensityOption = None,
    z: ZOption = None,
) -> None:
    """Show what nucscale sees in a slide (or in a bioimage.io model package)."""
    from nucscale.models._bioimageio_package import is_package

    if is_package(slide):
        _package_info(slide)
        return
    try:
        from nucscale.io import open_slide, slide_info

        options = read_options(channel, intensity_range, z)
        with open_slide(slide, mpp=mpp, options=options) as s:
            meta = slide_info(s)
    except NucscaleError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
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
    _samples_info(out, meta)


def _samples_info(out: Console, meta: dict) -> None:
    """Bit depth, dimensions, channels (the one read marked) and the read choices made."""
    dims = "  ".join(f"{k}={v}" for k, v in meta["dims"].items())
    out.print(f"samples: {meta['bit_depth']} bit" + (f"   dimensions: {dims}" if dims else ""))
    read = meta["read"]
    if meta["channels"]:
        table = Table("channel", "name", "description", "excitation nm", "emission nm", "read")
        for ch in meta["channels"]:
            chosen = read.get("channel", "").split(":")[0] == str(ch["index"])
            table.add_row(
                str(ch["index"]),
                ch["name"],
                ch["description"] or "-",
                f"{ch['excitation_nm']:g}" if ch["excitation_nm"] else "-",
                f"{ch['emission_nm']:g}" if ch["emission_nm"] else "-",
                f"yes ({read.get('channel_rule', '')})" if chosen else "",
            )
        out.print(table)
    for key, value in read.items():
        if key not in ("channel", "channel_rule"):
            out.print(f"{key}: {value}")


def _package_info(path: Path) -> None:
    """What ``--model bioimageio --weights PATH`` would run; a bad package is one line."""
    from nucscale.models._bioimageio_package import load_package, summary

    try:
        pkg = load_package(path)
    except NucscaleError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    out = Console()
    out.print(f"[bold]{path}[/bold]: bioimage.io model package")
    table = Table("field", "value")
    for key, value in summary(pkg):
        table.add_row(key, value)
    out.print(table)
