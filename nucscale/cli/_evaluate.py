"""``nucscale evaluate PRED GT``: PQ, AJI, Dice and the DSB score of instance label images.

PRED and GT are instance label images (PNG, TIFF, ...) or folders of them; in folders, files
are paired by name (same file name, else same stem), and the mean over the pairs is reported
as well. ``--image`` (a file, or a folder paired by name in the same way) gives the picture
that ``--overlay`` draws outlines on; in folder mode ``--overlay`` is a folder that receives
``<stem>_overlay.png`` per pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.errors import InputError, NucscaleError, OutputError

_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"}
_COLUMNS = ("pq", "dq", "sq", "aji", "dice", "iou_dsb", "tp", "fp", "fn", "n_gt", "n_pred")
_FLOAT = {"pq", "dq", "sq", "aji", "dice", "iou_dsb"}


def _read(path: Path, *, labels: bool) -> np.ndarray:
    """A label image (2-D integers) or a picture (2-D or RGB) from disk."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if path.suffix.lower() in {".tif", ".tiff"}:
            import tifffile

            arr = np.asarray(tifffile.imread(path))
        else:
            with Image.open(path) as im:
                arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read image: {exc}") from None
    if labels:
        arr = np.squeeze(arr)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(
                path,
                f"not an instance label image (need 2-D integers, got {arr.dtype} {arr.shape})",
            )
    return arr


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)


def _partner(name: Path, folder: Path) -> Path | None:
    exact = folder / name.name
    if exact.is_file():
        return exact
    same_stem = [p for p in _images(folder) if p.stem == name.stem]
    return same_stem[0] if len(same_stem) == 1 else None


def _pairs(pred: Path, gt: Path, image: Path | None) -> list[tuple[Path, Path, Path | None]]:
    """(pred, gt, image) triples of a file pair or of two folders paired by name."""
    for p in (pred, gt, image):
        if p is not None and not p.exists():
            raise InputError(p, "not found")
    if pred.is_dir() != gt.is_dir():
        raise InputError(pred, "PRED and GT must both be files or both be folders")
    if not pred.is_dir():
        if image is not None and image.is_dir():
            raise InputError(image, "--image must be a file when PRED and GT are files")
        return [(pred, gt, image)]
    out: list[tuple[Path, Path, Path | None]] = []
    for p in _images(pred):
        g = _partner(p, gt)
        if g is None:
            continue
        img = None
        if image is not None:
            img = _partner(p, image) if image.is_dir() else image
        out.append((p, g, img))
    if not out:
        raise InputError(pred, f"no label image here has a partner of the same name in {gt}")
    return out


def _cell(key: str, value: float) -> str:
    if key in _FLOAT:
        return f"{value:.4f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _row(name: str, m: dict[str, Any]) -> list[str]:
    return [name] + [_cell(k, m[k]) for k in _COLUMNS]


def _write_png(path: Path, rgb: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path)
    except OSError as exc:
        raise OutputError(path, f"cannot write overlay: {exc}") from None


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predicted instance labels: image or folder.")],
    gt: Annotated[Path, typer.Argument(help="Ground-truth instance labels: image or folder.")],
    image: Annotated[
        Path | None, typer.Option(help="Picture under the overlay (file, or folder by name).")
    ] = None,
    overlay: Annotated[
        Path | None,
        typer.Option(help="Write a QC overlay PNG here (a folder when PRED/GT are folders)."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write per-image and mean metrics as JSON.")
    ] = None,
) -> None:
    """Score predicted nuclei against ground truth: PQ, AJI, Dice, DSB score. For mammograms:
    PRED a results folder of nucscale run and GT the archive's INDEX.parquet: Dice and IoU of
    each mass mask against the summed truth masks."""
    if gt.suffix == ".parquet":
        _mammograms(pred, gt, json_out)
        return
    from nucscale.analysis import evaluate as evaluate_labels
    from nucscale.analysis import overlay as draw_overlay

    results: list[dict[str, Any]] = []
    try:
        pairs = _pairs(pred, gt, image)
        for p, g, img in pairs:
            pl, gl = _read(p, labels=True), _read(g, labels=True)
            if pl.shape != gl.shape:
                raise InputError(p, f"shape {pl.shape} differs from ground truth {g} {gl.shape}")
            metrics = evaluate_labels(gl, pl)
            results.append({"pred": str(p), "gt": str(g), **metrics})
            if overlay is not None:
                pic = _read(img, labels=False) if img is not None else None
                if pic is not None and pic.shape[:2] != gl.shape:
                    raise InputError(img or p, f"image shape {pic.shape[:2]} != labels {gl.shape}")
                target = overlay / f"{p.stem}_overlay.png" if pred.is_dir() else overlay
                _write_png(target, draw_overlay(pic, gl, pl))
    except NucscaleError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    mean = {k: float(np.mean([r[k] for r in results])) for k in _COLUMNS}
    out = Console()
    table = Table("image", *_COLUMNS)
    for r in results:
        table.add_row(*_row(Path(r["pred"]).name, r))
    if len(results) > 1:
        table.add_row(*_row(f"mean ({len(results)})", mean))
    out.print(table)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps({"images": results, "mean": mean}, indent=1))
        except OSError as exc:
            console.print(f"[red]error:[/red] {json_out}: cannot write: {exc}", soft_wrap=True)
            raise typer.Exit(2) from None


def _mammograms(out: Path, index: Path, json_out: Path | None) -> None:
    """Dice and IoU of every mammogram of ``index`` segmented in ``out``."""
    from nucscale.analysis._mammo import score_results
    from nucscale.archive import read_index

    try:
        rows = score_results(out, read_index(index))
        if not rows:
            raise InputError(out, f"no mass mask of a mammogram of {index} with truth masks")
    except NucscaleError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table("mammogram", "dice", "iou")
    table.columns[0].overflow = "fold"
    for r in rows:
        table.add_row(r["mammogram_id"], f"{r['dice']:.3f}", f"{r['iou']:.3f}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "iou")}
    table.add_row(f"mean of {len(rows)}", f"{mean['dice']:.3f}", f"{mean['iou']:.3f}")
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({"per_image": rows, "mean": mean}, indent=2))
