"""Writing test and benchmark slides from real pixels: pyramidal OME-TIFF, flat TIFF, mosaics.

No small real pyramidal OME-TIFF is redistributable, so fixtures are generated from a region of
the real CMU-1 slide: :func:`mosaic` grows it (mirrored, so seams are continuous and no
artificial edges appear at repeat boundaries) and :func:`write_pyramidal_tiff` writes it as a
tiled pyramid with SubIFDs, the layout OME-TIFF and QuPath use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Literal

import numpy as np
import tifffile

log = logging.getLogger(__name__)

Compression = Literal["jpeg", "deflate"] | None


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 array (h, w, 3), got {rgb.dtype} {rgb.shape}")


def mosaic(rgb: np.ndarray, reps_y: int, reps_x: int) -> np.ndarray:
    """Tile ``rgb`` ``reps_y`` × ``reps_x`` times, mirroring every other copy.

    Odd rows of copies are flipped vertically and odd columns horizontally, so neighbouring
    copies meet at identical pixels and the result has no seams.

    Parameters
    ----------
    rgb:
        (h, w, c) image.
    reps_y, reps_x:
        Number of copies down and across (>= 1).

    Returns
    -------
    numpy.ndarray
        (h * reps_y, w * reps_x, c) array of the same dtype.
    """
    if reps_y < 1 or reps_x < 1:
        raise ValueError(f"reps must be >= 1, got {reps_y}x{reps_x}")
    flipped_x = rgb[:, ::-1]
    row = np.concatenate([rgb if j % 2 == 0 else flipped_x for j in range(reps_x)], axis=1)
    flipped_row = row[::-1]
    return np.concatenate([row if i % 2 == 0 else flipped_row for i in range(reps_y)], axis=0)


def downsample2(rgb: np.ndarray) -> np.ndarray:
    """Halve an image by 2×2 box averaging (odd last row/column dropped), rounding to uint8."""
    h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
    blocks = rgb[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).astype(np.float32)
    return np.rint(blocks.mean(axis=(1, 3))).astype(rgb.dtype)


def _n_levels(h: int, w: int, tile: int) -> int:
    n = 1
    while max(h, w) > tile and min(h, w) >= 2:
        h, w, n = h // 2, w // 2, n + 1
    return n


def write_pyramidal_tiff(
    rgb: np.ndarray,
    path: str | os.PathLike[str],
    *,
    mpp: float,
    tile: int = 256,
    n_levels: int | None = None,
    ome: bool = True,
    compression: Compression = "jpeg",
) -> None:
    """Write a tiled pyramidal TIFF (levels 1.. as SubIFDs of level 0), OME-TIFF by default.

    Parameters
    ----------
    rgb:
        Level 0, RGB uint8 (h, w, 3).
    path:
        Output file (``.ome.tif`` by convention when ``ome``).
    mpp:
        Pixel size of level 0 in µm/px; written as OME PhysicalSizeX/Y in µm and as resolution
        tags in pixels per centimetre on every level.
    tile:
        Tile edge in pixels (a multiple of 16).
    n_levels:
        Number of levels, each half the previous; default: halve until the level fits in one
        tile.
    ome:
        Write OME-XML metadata.
    compression:
        ``"jpeg"`` (lossy, quality 90), ``"deflate"`` (lossless) or ``None``.
    """
    _check_rgb(rgb)
    if not mpp > 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    h, w = rgb.shape[:2]
    levels = _n_levels(h, w, tile) if n_levels is None else n_levels
    if levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {levels}")
    options: dict = {
        "photometric": "rgb",
        "tile": (tile, tile),
        "resolutionunit": "CENTIMETER",
        "compression": compression,
    }
    if compression == "jpeg":
        options["compressionargs"] = {"level": 90}
    metadata = (
        {
            "axes": "YXS",
            "PhysicalSizeX": mpp,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": mpp,
            "PhysicalSizeYUnit": "µm",
        }
        if ome
        else None
    )
    big = rgb.nbytes > 2**31
    with tifffile.TiffWriter(path, bigtiff=big, ome=ome) as tif:
        per_cm = 1e4 / mpp
        tif.write(
            rgb,
            subifds=levels - 1,
            resolution=(per_cm, per_cm),
            metadata=metadata,
            **options,
        )
        level = rgb
        for i in range(1, levels):
            level = downsample2(level)
            scale = 2**i
            tif.write(
                level,
                subfiletype=1,
                resolution=(per_cm / scale, per_cm / scale),
                metadata=None,
                **options,
            )
    log.debug("wrote %s: %dx%d, %d levels", path, w, h, levels)


def write_flat_tiff(
    rgb: np.ndarray, path: str | os.PathLike[str], *, mpp: float | None = None
) -> None:
    """Write a plain (strip-organised, uncompressed, single-level) RGB TIFF.

    Parameters
    ----------
    rgb:
        RGB uint8 (h, w, 3).
    path:
        Output file.
    mpp:
        Pixel size in µm/px, written as resolution in pixels per centimetre; without it the
        file carries no resolution unit.
    """
    _check_rgb(rgb)
    if mpp is None:
        tifffile.imwrite(path, rgb, photometric="rgb", metadata=None)
        return
    if not mpp > 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    tifffile.imwrite(
        path,
        rgb,
        photometric="rgb",
        resolution=(1e4 / mpp, 1e4 / mpp),
        resolutionunit="CENTIMETER",
        metadata=None,
    )


def _mirror_index(n: int, size: int, start: int) -> np.ndarray:
    """Source indices of mosaic positions ``start .. start + n`` along an axis of a source of
    ``size`` pixels tiled with every other copy mirrored (period ``2 * size``)."""
    pos = np.arange(start, start + n) % (2 * size)
    return np.where(pos < size, pos, 2 * size - 1 - pos)


def mosaic_tiles(src: np.ndarray, height: int, width: int, tile: int) -> Iterator[np.ndarray]:
    """Tiles (row-major, ``tile`` x ``tile``, zero-padded at the edges) of the mirrored mosaic
    of ``src`` cut to ``height`` x ``width``, computed one tile at a time."""
    h, w = src.shape[:2]
    for y in range(0, height, tile):
        rows = _mirror_index(min(tile, height - y), h, y)
        for x in range(0, width, tile):
            cols = _mirror_index(min(tile, width - x), w, x)
            block = np.zeros((tile, tile, src.shape[2]), src.dtype)
            block[: rows.size, : cols.size] = src[rows[:, None], cols[None, :]]
            yield block


def write_mosaic_tiff(
    src: np.ndarray,
    path: str | os.PathLike[str],
    height: int,
    width: int,
    *,
    mpp: float,
    tile: int = 256,
) -> None:
    """Write a ``height`` x ``width`` pyramidal OME-TIFF of the mirrored mosaic of ``src``
    (real pixels; neighbouring copies are mirror images, so there are no seams), streaming
    tile by tile: a 40,000 px square slide never needs more than one tile and the source
    pyramid in memory. Level k is the mosaic of ``src`` box-averaged k times (at copy seams
    it can differ by rounding from averaging the level-0 mosaic itself)."""
    _check_rgb(src)
    levels = _n_levels(height, width, tile)
    sources = [src]
    for _ in range(1, levels):
        sources.append(downsample2(sources[-1]))
    per_cm = 1e4 / mpp
    options: dict = {
        "photometric": "rgb",
        "tile": (tile, tile),
        "resolutionunit": "CENTIMETER",
        "compression": "jpeg",
        "compressionargs": {"level": 90},
        "dtype": np.uint8,
    }
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": mpp,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": mpp,
        "PhysicalSizeYUnit": "µm",
    }
    big = height * width * 3 > 2**31
    with tifffile.TiffWriter(path, bigtiff=big, ome=True) as tif:
        for k, level_src in enumerate(sources):
            hk, wk = max(1, height >> k), max(1, width >> k)
            tif.write(
                mosaic_tiles(level_src, hk, wk, tile),
                shape=(hk, wk, 3),
                subifds=levels - 1 if k == 0 else None,
                subfiletype=1 if k else 0,
                resolution=(per_cm / 2**k, per_cm / 2**k),
                metadata=metadata if k == 0 else None,
                **options,
            )
    log.debug("wrote mosaic %s: %dx%d, %d levels", path, width, height, levels)
