"""The maps store: a dense network's output maps for a slide, in its scratch space.

The network runs once per output patch of its global grid (a *forward* task per tile computes
the patches that start in its core) and writes each patch's maps as exactly one chunk of a Zarr
v3 array of shape (K, H, W) (H, W: the analysis image rounded up to whole patches), so tasks
never write the same chunk. The *instances* task of a tile then reads its window's maps, halo
included, from here: no neighbour computes them again. Maps are kept as float16 (the engine
rounds maps the same way on every path, :data:`nucscale.infer._engine.MAPS_DTYPE`); a patch not
computed (no tissue near it) reads as 0, which every model's post-processing takes as
background. A forward task's completion marker ``done/<row>_<col>`` is created by an atomic
rename after its last chunk; a rerun skips exactly the tiles that have one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from nucscale.tiling._grid import Box
from nucscale.tiling._markers import is_done, mark_done, reusable


def maps_extent(width: int, height: int, patch: int) -> tuple[int, int]:
    """(height, width) of a maps store: the analysis image rounded up to whole patches (the
    patch grid starts at 0), the same extent for every window that reads it."""
    return -(-height // patch) * patch, -(-width // patch) * patch


def create_maps_store(
    path: Path, n_maps: int, shape: tuple[int, int], patch: int, attrs: dict[str, Any]
) -> None:
    """Create (or reuse, when the geometry and ``attrs`` match) the store at ``path``."""
    full = (n_maps, *shape)
    if reusable(path, attrs, full):
        return
    zarr.create_array(
        str(path),
        shape=full,
        chunks=(n_maps, patch, patch),
        dtype="float16",
        fill_value=0.0,
        # LZ4 after bit-shuffling: 4x faster to write and 2x to read than zarr's default zstd,
        # about as small (measured on 256 px float16 map chunks)
        compressors=BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle"),
        attributes=attrs,
        dimension_names=("k", "y", "x"),
    )


def maps_done(path: Path, row: int, col: int) -> bool:
    """Whether the forward task of tile (row, col) finished (its marker exists)."""
    return is_done(path, row, col)


def write_patches(
    path: Path, row: int, col: int, starts: list[tuple[int, int]], maps: np.ndarray
) -> None:
    """Write each patch's maps (``maps[i]`` at global top-left ``starts[i]`` = (y, x), one
    whole chunk each), then mark tile (row, col) complete."""
    if starts:
        out = maps.shape[-1]
        ys, xs = [y for y, _ in starts], [x for _, x in starts]
        y0, x0 = min(ys), min(xs)
        # one write of the patches' bounding block (zarr writes its chunks together; a patch
        # not computed is all zeros there, the fill value, and its chunk is not stored)
        block = np.zeros((maps.shape[1], max(ys) + out - y0, max(xs) + out - x0), np.float16)
        for (y, x), m in zip(starts, maps, strict=True):
            block[:, y - y0 : y - y0 + out, x - x0 : x - x0 + out] = m
        arr = zarr.open_array(str(path), mode="r+")
        arr[:, y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] = block
    mark_done(path, row, col)


def read_maps(path: Path, box: Box) -> np.ndarray:
    """(K, h, w) maps over ``box`` (global analysis pixels, inside the store), in the store's
    float16: post-processing compares them with float32 cut-offs; a float32 copy of a 2560²
    window of three maps was 79 MB more at the instance stage's peak."""
    arr = zarr.open_array(str(path), mode="r")
    return np.asarray(arr[:, box.y0 : box.y1, box.x0 : box.x1])
