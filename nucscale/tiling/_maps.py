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

import time
from collections.abc import Iterable, Sequence
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
    path: Path,
    row: int,
    col: int,
    batches: Iterable[tuple[Sequence[tuple[int, int]], np.ndarray]],
) -> float:
    """Write the patches' maps as ``batches`` hand them out ((starts, maps): ``maps[i]`` at
    global top-left ``starts[i]`` = (y, x), each one whole chunk), then mark tile (row, col)
    complete. Returns the seconds spent writing (the rest went to whoever makes the batches).

    A tile's maps are never held whole (16 patches of 512 px, three maps: 24 MiB, and twice
    that again in the copies one block write needed): each run of patches side by side in a
    row is written once it ends, in one call (a call per patch cost 2 ms more each, zarr's
    overhead). A patch all zeros (no tissue) is the fill value: zarr does not store its
    chunk."""
    arr = zarr.open_array(str(path), mode="r+")
    run: list[tuple[int, int, np.ndarray]] = []
    spent = 0.0

    def flush() -> float:
        t0 = time.perf_counter()
        if run:
            y, x = run[0][0], run[0][1]
            block = run[0][2] if len(run) == 1 else np.concatenate([m for *_, m in run], -1)
            arr[:, y : y + block.shape[1], x : x + block.shape[2]] = block
            run.clear()
        return time.perf_counter() - t0

    for starts, maps in batches:
        out = maps.shape[-1]
        for (y, x), m in zip(starts, maps, strict=True):
            if run and (y != run[-1][0] or x != run[-1][1] + out):
                spent += flush()
            run.append((y, x, m))
    spent += flush()
    mark_done(path, row, col)
    return spent


def read_maps(path: Path, box: Box) -> np.ndarray:
    """(K, h, w) maps over ``box`` (global analysis pixels, inside the store), in the store's
    float16: post-processing compares them with float32 cut-offs; a float32 copy of a 2560²
    window of three maps was 79 MB more at the instance stage's peak."""
    arr = zarr.open_array(str(path), mode="r")
    return np.asarray(arr[:, box.y0 : box.y1, box.x0 : box.x1])
