"""The Zarr v3 tile store: the slide at analysis resolution, each tile core whole chunks.

A tile's core is split into chunks of at most :data:`MAX_CHUNK` px that no other tile writes
(:func:`store_chunk`); a window (a core and its halo) decodes only the chunks it touches. Only
tissue tiles are written; every other chunk reads as the fill value, the background of the
modality (white glass in brightfield, black in fluorescence). After a tile's chunks are written, a
completion marker ``done/<row>_<col>`` is created by an atomic rename; a rerun skips exactly the
tiles with a marker. This does not rely on how (or whether atomically) a zarr version writes its
chunk files, nor on its chunk key layout. A store whose geometry or source differs from the
current run is replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from nucscale.io._base import PAD_VALUE
from nucscale.io._chunks import chunk_pieces
from nucscale.tiling._grid import Box
from nucscale.tiling._markers import is_done, mark_done, reusable

_CONFIG: Any = {"write_empty_chunks": True}  # a tile of pure background is still a tile

#: Largest chunk side. With one 2048² chunk per tile, the 2560² window of an instance task
#: decoded the 9 chunks it touches, 113 MB for its 20 MB (40 ms); in chunks of 1024² it decodes
#: 50 MB (14 ms, :func:`read_window`), a forward task's input 37 -> 12 ms (8192² mosaic).
#: Chunks of 512² were no faster read as one selection (10.7 against 9.9 ms).
MAX_CHUNK = 1024


def store_chunk(tile: int) -> int:
    """The chunk side for tiles of ``tile`` px: the largest divisor of ``tile`` up to
    :data:`MAX_CHUNK`, so each chunk lies in one tile and is written by that tile's ingest
    alone; ``tile`` itself when every such divisor is under 256 px (a prime tile size)."""
    for parts in range(-(-tile // MAX_CHUNK), tile // 256 + 1):
        if tile % parts == 0:
            return tile // parts
    return tile


def create_tile_store(
    path: Path, shape: tuple[int, int], tile: int, attrs: dict[str, Any], fill: int = PAD_VALUE
) -> None:
    """Create (or reuse, when ``attrs`` and ``fill`` match) the store at ``path``.

    ``fill`` is what unwritten chunks and pixels outside the image read as: the modality's
    background (255 for brightfield glass, 0 for a fluorescence field).
    """
    attrs = {**attrs, "fill": fill}
    if reusable(path, attrs, (*shape, 3)):
        return
    zarr.create_array(
        str(path),
        shape=(*shape, 3),
        chunks=(store_chunk(tile), store_chunk(tile), 3),
        dtype="uint8",
        fill_value=fill,
        attributes=attrs,
        dimension_names=("y", "x", "c"),
        # LZ4: measured on CMU-1 tiles of 1024², writing a tile 10.5 -> 5.2 ms and reading a
        # forward window (the tile and 32 px of its 8 neighbours' chunks) 16.2 -> 9.0 ms
        # against zarr's default Zstandard, for a store 10 % larger (12.9 -> 14.2 MiB per 9
        # tiles: scanned JPEG pixels compress little either way)
        compressors=BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"),
        config=_CONFIG,
    )


def chunk_exists(path: Path, row: int, col: int) -> bool:
    """Whether tile (row, col) has been ingested completely (its completion marker exists)."""
    return is_done(path, row, col)


def write_tile(path: Path, row: int, col: int, box: Box, rgb: np.ndarray) -> None:
    """Write ``rgb`` into tile (row, col)'s core ``box`` (whole chunks), then mark the tile
    complete."""
    arr = zarr.open_array(str(path), mode="r+", config=_CONFIG)
    arr[box.y0 : box.y1, box.x0 : box.x1, :] = rgb
    mark_done(path, row, col)


def read_window(path: Path, box: Box) -> np.ndarray:
    """Read ``box`` (may reach outside the image, which reads white) as RGB uint8.

    One row of chunks at a time: zarr decodes every chunk a selection touches at once. Read as
    one selection of 2048² chunks, the 2560² window of the 8192² mosaic's tile (1, 1) peaked at
    157 MiB above its 19 MiB result (``tracemalloc``), a corner's at about half that: the
    worker's peak grew with the share of interior tiles, i.e. with the slide. A row of
    chunks of :data:`MAX_CHUNK` holds at most four of 3 MiB; a selection per chunk paid zarr's
    overhead once per chunk (1024² chunks, a 2560² window: 21 ms, 14 by rows, 9 at once).
    """
    arr = zarr.open_array(str(path), mode="r")
    h, w = arr.shape[0], arr.shape[1]
    inner = box.intersect(Box(0, 0, w, h))
    out = np.full((box.height, box.width, 3), arr.fill_value, np.uint8)
    if inner is None:
        return out
    rows, cols = slice(inner.y0, inner.y1), slice(inner.x0, inner.x1)
    bands = (arr.chunks[0], w)  # pieces one chunk high and as wide as the window
    for ys, xs in chunk_pieces((h, w), bands, rows, cols):
        oy, ox = ys.start - box.y0, xs.start - box.x0
        out[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = arr[ys, xs, :]
    return out
