"""OME-NGFF 0.5 (Zarr v3) outputs: the nucleus label image and, optionally, the analysed image.

``OUT/labels/<id>.zarr`` is a multiscale label image: a group whose ``ome`` attributes hold
``multiscales`` (axes y, x in micrometres; level k is level 0 subsampled by 2**k, nearest
neighbour, so a label value never blends into another) and ``image-label``; arrays ``0``, ``1``,
... are int64 with 0 as background and each nucleus painted with its ``nucleus_id``. ome-zarr-py
and napari (napari-ome-zarr) open it as a labels layer.

``OUT/images/<id>.zarr`` (``nucscale run --save-image``) is the RGB image the segmenter saw, at
the analysis pixel size, as an NGFF image (axes c, y, x; level k the 2**k x 2**k mean); the label
image's ``image-label.source.image`` then points to it.

The pyramids are built after the slide's level 0 is complete, one output chunk at a time from
the level below, so memory stays at a few chunks whatever the slide size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nucscale.errors import InputError
from nucscale.io._chunks import chunk_pieces
from nucscale.store._ids import check_slide_id

NGFF_VERSION = "0.5"
#: Smallest side worth another pyramid level.
MIN_LEVEL_SIDE = 256


def labels_path(out: Path, slide_id: str) -> Path:
    """``OUT/labels/<id>.zarr`` (the id checked by :func:`check_slide_id`)."""
    check_slide_id(slide_id, out)
    return Path(out) / "labels" / f"{slide_id}.zarr"


def image_path(out: Path, slide_id: str) -> Path:
    """``OUT/images/<id>.zarr`` (the id checked by :func:`check_slide_id`)."""
    check_slide_id(slide_id, out)
    return Path(out) / "images" / f"{slide_id}.zarr"


def create_label_image(
    path: Path, shape: tuple[int, int], chunk: int, attrs: dict[str, Any]
) -> zarr.Array:
    """The group at ``path`` with an empty level-0 label array ``0`` and the empty levels its
    painters write (:func:`painted_levels`); the NGFF metadata and the coarser levels are added
    by :func:`finish_label_image` once level 0 is painted."""
    group = zarr.open_group(str(path), mode="w", attributes={"nucscale": attrs})
    level = group.create_array(
        "0",
        shape=shape,
        chunks=(chunk, chunk),
        dtype="int64",
        fill_value=0,
        dimension_names=("y", "x"),
    )
    add_painted_levels(path)
    return level


#: Smallest chunk side of a pyramid level that the painters of level 0 write.
MIN_PAINTED_CHUNK = 512


def painted_levels(shape: tuple[int, ...], chunk: int) -> int:
    """How many levels above level 0 (of ``shape``, chunks ``chunk``) its painters write.

    Level k has chunks of ``chunk >> k``: level 0's chunk (r, c) taken every 2**k pixels is
    then exactly level k's chunk (r, c), so the task that paints a level-0 chunk writes its
    chunk of each such level (:func:`paint_levels`), at once and in parallel with the others,
    instead of the finishing step reading level 0 back, alone, after the last tile (5-6 s of
    a 16384² mosaic's finalisation on one core while the other waited). Levels go on while
    ``chunk`` divides by 2**k and ``chunk >> k`` is at least :data:`MIN_PAINTED_CHUNK` (more,
    smaller chunk files buy little: the next level is a quarter of the size); the levels above
    are built from the last painted one by :func:`finish_label_image`.
    """
    levels, n = _levels(shape), 0
    while n + 1 < levels and chunk % 2 ** (n + 1) == 0 and chunk >> (n + 1) >= MIN_PAINTED_CHUNK:
        n += 1
    return n


def add_painted_levels(path: Path) -> None:
    """Create the painted levels of the label image at ``path`` that are missing or chunked
    otherwise (a scratch image of an earlier version: level 0 only, or levels its finishing
    step built with level 0's chunks, which painters writing parts of one chunk at once would
    overwrite in each other's place); the painters then fill them."""
    group = zarr.open_group(str(path), mode="r+")
    src = group["0"]
    assert isinstance(src, zarr.Array)
    chunk = src.chunks[-1]
    for k in range(1, painted_levels(src.shape, chunk) + 1):
        chunks = (chunk >> k, chunk >> k)
        old = group.get(str(k))
        if not isinstance(old, zarr.Array) or old.chunks != chunks:
            group.create_array(
                str(k),
                shape=tuple(-(-side // 2**k) for side in src.shape),
                chunks=chunks,
                dtype=src.dtype,
                fill_value=src.fill_value,
                dimension_names=src.metadata.dimension_names,  # type: ignore[union-attr]
                overwrite=True,
            )


def paint_levels(path: Path, row: int, col: int, labels: np.ndarray) -> None:
    """Write level 0's chunk (``row``, ``col``), painted as ``labels``, into level 0 and the
    painted levels of the label image at ``path`` (:func:`painted_levels`): every 2**k-th pixel
    into level k."""
    group = zarr.open_group(str(path), mode="r+")
    src = group["0"]
    assert isinstance(src, zarr.Array)
    chunk = src.chunks[-1]
    for k in range(painted_levels(src.shape, chunk) + 1):
        small = labels[:: 2**k, :: 2**k]
        if small.any():  # an empty chunk stays unwritten: it reads as the fill value
            y, x = row * (chunk >> k), col * (chunk >> k)
            dst = group[str(k)]
            assert isinstance(dst, zarr.Array)
            dst[y : y + small.shape[0], x : x + small.shape[1]] = small


def level0(path: Path) -> zarr.Array:
    """Level 0 of the label (or image) pyramid at ``path``, writable."""
    return zarr.open_array(str(path / "0"), mode="r+")


def open_labels(out: Path, slide_id: str, level: int = 0) -> zarr.Array:
    """Read-only label array of a finished slide at pyramid ``level``."""
    path = labels_path(out, slide_id)
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise InputError(path, f"pyramid level {level!r} must be an integer >= 0")
    return zarr.open_array(str(path / str(level)), mode="r")


def _levels(shape: tuple[int, ...]) -> int:
    """Number of pyramid levels: halve until the smaller spatial side would drop below
    :data:`MIN_LEVEL_SIDE` (at least one level)."""
    n, side = 1, min(shape[-2:])
    while side // 2 >= MIN_LEVEL_SIDE:
        side //= 2
        n += 1
    return n


def _build_levels(
    group: zarr.Group,
    reduce: Callable[[zarr.Array, slice, slice], np.ndarray],
    levels: int,
    start: int = 1,
) -> None:
    """Write arrays ``start..levels-1`` of ``group``, each from the one below, chunk by chunk:
    ``reduce(src, rows, cols)`` gives the half-size block of the source block (rows, cols)."""
    for k in range(start, levels):
        src = group[str(k - 1)]
        assert isinstance(src, zarr.Array)
        lead = src.shape[:-2]
        h, w = (src.shape[-2] + 1) // 2, (src.shape[-1] + 1) // 2
        chunk = src.chunks[-1]
        dst = group.create_array(
            str(k),
            shape=(*lead, h, w),
            chunks=src.chunks,
            dtype=src.dtype,
            fill_value=src.fill_value,
            dimension_names=src.metadata.dimension_names,  # type: ignore[union-attr]
            overwrite=True,
        )
        for y in range(0, h, chunk):
            for x in range(0, w, chunk):
                small = reduce(src, slice(2 * y, 2 * (y + chunk)), slice(2 * x, 2 * (x + chunk)))
                if np.any(small != src.fill_value):
                    dst[..., y : y + small.shape[-2], x : x + small.shape[-1]] = small
                del small  # not held while the next block is read (a 2048² int64 chunk)


def _parts(src: zarr.Array, rows: slice, cols: slice) -> Iterator[tuple[slice, slice]]:
    """The pieces of the block (rows, cols), clipped to the array, that lie in one source
    chunk each (a pyramid's source block is four chunks: for labels 4 x 2048² int64, 128 MiB)."""
    return chunk_pieces(src.shape[-2:], src.chunks[-2:], rows, cols)


def _half_shape(src: zarr.Array, rows: slice, cols: slice) -> tuple[int, ...]:
    h, w = min(rows.stop, src.shape[-2]) - rows.start, min(cols.stop, src.shape[-1]) - cols.start
    return (*src.shape[:-2], (h + 1) // 2, (w + 1) // 2)


def _subsample(src: zarr.Array, rows: slice, cols: slice) -> np.ndarray:
    """Every other pixel of the block, read strided one source chunk at a time (:func:`_parts`;
    the 16384² mosaic's finalisation peaked at 215 MiB traced, +170 MiB resident, reading the
    block at once): only the quarter kept is materialised."""
    out = np.empty(_half_shape(src, rows, cols), src.dtype)
    for ys, xs in _parts(src, rows, cols):
        ya = ys.start + (ys.start - rows.start) % 2  # the first kept row of this piece
        xb = xs.start + (xs.start - cols.start) % 2
        if ya < ys.stop and xb < xs.stop:
            part = np.asarray(src[..., ya : ys.stop : 2, xb : xs.stop : 2])
            oy, ox = (ya - rows.start) // 2, (xb - cols.start) // 2
            out[..., oy : oy + part.shape[-2], ox : ox + part.shape[-1]] = part
    return out


def _mean2(src: zarr.Array, rows: slice, cols: slice) -> np.ndarray:
    """2 x 2 mean of the block over the last two axes (an odd edge averages what it has), one
    source chunk at a time where the chunks and the block's start are even (each piece then
    starts on a pair; a whole 3 x 4096² block of CMU-1 peaked at 432 MiB traced, by chunk
    123)."""
    if any(v % 2 for v in (*src.chunks[-2:], rows.start, cols.start)):
        return _mean2_of(np.asarray(src[..., rows, cols]))
    out = np.empty(_half_shape(src, rows, cols), src.dtype)
    for ys, xs in _parts(src, rows, cols):
        part = _mean2_of(np.asarray(src[..., ys, xs]))
        oy, ox = (ys.start - rows.start) // 2, (xs.start - cols.start) // 2
        out[..., oy : oy + part.shape[-2], ox : ox + part.shape[-1]] = part
    return out


def _mean2_of(block: np.ndarray) -> np.ndarray:
    h, w = block.shape[-2:]
    ph, pw = h % 2, w % 2
    b = np.pad(block.astype(np.float32), [(0, 0)] * (block.ndim - 2) + [(0, ph), (0, pw)],
               mode="edge")  # fmt: skip
    m = (b[..., 0::2, 0::2] + b[..., 1::2, 0::2] + b[..., 0::2, 1::2] + b[..., 1::2, 1::2]) / 4
    return np.rint(m).astype(block.dtype)


def _multiscales(name: str, axes: list[dict[str, str]], mpp: float, levels: int) -> list[dict]:
    datasets = []
    for k in range(levels):
        scale = [1.0] * (len(axes) - 2) + [mpp * 2**k] * 2
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": scale}]})  # fmt: skip
    return [{"name": name, "axes": axes, "datasets": datasets}]


_YX = [
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def finish_label_image(path: Path, mpp: float, source_image: str | None = None) -> int:
    """Build the levels of the label image at ``path`` above those its painters wrote
    (:func:`painted_levels`) and write its NGFF metadata; returns the number of levels.
    ``source_image`` is the relative path of the image the labels belong to, when one was
    written."""
    group = zarr.open_group(str(path), mode="r+")
    src = level0(path)
    levels = _levels(src.shape)
    _build_levels(group, _subsample, levels, start=painted_levels(src.shape, src.chunks[-1]) + 1)
    label: dict[str, Any] = {"version": NGFF_VERSION}
    if source_image is not None:
        label["source"] = {"image": source_image}
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": _multiscales("nuclei", _YX, mpp, levels),
        "image-label": label,
    }
    return levels


def write_image(path: Path, src: zarr.Array, mpp: float, name: str) -> int:
    """Copy the (h, w, 3) uint8 array ``src`` (the tile store) into a multiscale NGFF image
    at ``path``, chunk by chunk; returns the number of levels."""
    h, w = src.shape[0], src.shape[1]
    chunk = src.chunks[0]
    group = zarr.open_group(str(path), mode="w")
    arr = group.create_array(
        "0",
        shape=(3, h, w),
        chunks=(3, chunk, chunk),
        dtype="uint8",
        fill_value=0,
        dimension_names=("c", "y", "x"),
    )
    for y in range(0, h, chunk):
        for x in range(0, w, chunk):
            block = np.asarray(src[y : y + chunk, x : x + chunk, :])
            arr[:, y : y + block.shape[0], x : x + block.shape[1]] = np.moveaxis(block, -1, 0)
    levels = _levels((h, w))
    _build_levels(group, _mean2, levels)
    axes = [{"name": "c", "type": "channel"}, *_YX]
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": _multiscales(name, axes, mpp, levels),
        "omero": {
            "channels": [
                {
                    "label": c,
                    "color": col,
                    "active": True,
                    "window": {"start": 0, "end": 255, "min": 0, "max": 255},
                }
                for c, col in (("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"))
            ]
        },
    }
    return levels


def write_grey_image(
    path: Path,
    image: np.ndarray,
    spacing_um: float | None,
    name: str,
    labels: dict[str, np.ndarray] | None = None,
    chunk: int = 1024,
) -> int:
    """A 2-D greyscale array (any integer dtype, kept: a 16-bit mammogram stays 16-bit) as a
    multiscale NGFF image at ``path`` (axes y, x; level k the 2**k mean), with each of
    ``labels`` (same shape) as an NGFF label image under ``labels/<name>``. The pixel spacing
    is the physical size in micrometres; unknown, the axes carry no unit and scale 1.
    Returns the number of levels."""
    group = zarr.open_group(str(path), mode="w")
    _write_level0(group, image, chunk)
    levels = _levels(image.shape)
    _build_levels(group, _mean2, levels)
    axes = _YX if spacing_um else [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    group.attrs["ome"] = {
        "version": NGFF_VERSION,
        "multiscales": _multiscales(name, axes, spacing_um or 1.0, levels),
    }
    if labels:
        holder = group.require_group("labels")
        holder.attrs["ome"] = {"version": NGFF_VERSION, "labels": list(labels)}
        for label_name, label in labels.items():
            sub = holder.require_group(label_name)
            _write_level0(sub, label, chunk)
            _build_levels(sub, _subsample, levels)
            sub.attrs["ome"] = {
                "version": NGFF_VERSION,
                "multiscales": _multiscales(label_name, axes, spacing_um or 1.0, levels),
                "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
            }
    return levels


def _write_level0(group: zarr.Group, image: np.ndarray, chunk: int) -> None:
    arr = group.create_array(
        "0",
        shape=image.shape,
        chunks=(min(chunk, image.shape[0]), min(chunk, image.shape[1])),
        dtype=image.dtype,
        fill_value=0,
        dimension_names=("y", "x"),
    )
    arr[:] = image
