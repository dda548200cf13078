"""Painting owned nuclei into output label chunks.

Each output chunk is painted from the owned nuclei of the tiles around it. Where two owned
nuclei claim the same pixel (possible only when a segmenter is not translation consistent), the
smaller nucleus id wins. The rule is a per-pixel minimum over non-zero ids, so the result does
not depend on the order in which tiles are visited.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

import numpy as np

from nucscale.tiling._grid import Box

Key = TypeVar("Key", bound=Hashable)


def paint(chunk: Box, pieces: Iterable[tuple[Box, np.ndarray]]) -> np.ndarray:
    """Label image (int64) of ``chunk`` from (box, id image) pieces; min non-zero id wins."""
    out = np.zeros((chunk.height, chunk.width), np.int64)
    for box, ids in pieces:
        inter = chunk.intersect(box)
        if inter is None:
            continue
        src = ids[inter.y0 - box.y0 : inter.y1 - box.y0, inter.x0 - box.x0 : inter.x1 - box.x0]
        dst = out[
            inter.y0 - chunk.y0 : inter.y1 - chunk.y0, inter.x0 - chunk.x0 : inter.x1 - chunk.x0
        ]
        take = (src > 0) & ((dst == 0) | (src < dst))
        dst[take] = src[take]
    return out


def crop_to_content(box: Box, ids: np.ndarray) -> tuple[Box, np.ndarray]:
    """Shrink an id image to the bounding box of its non-zero pixels (keeps files small)."""
    rows = np.flatnonzero(ids.any(axis=1))
    if rows.size == 0:
        return Box(box.x0, box.y0, box.x0, box.y0), ids[:0, :0]
    cols = np.flatnonzero(ids.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return Box(box.x0 + c0, box.y0 + r0, box.x0 + c1, box.y0 + r1), ids[r0:r1, c0:c1]


def split_by_chunk(
    box: Box, ids: np.ndarray, chunks: Iterable[tuple[Key, Box]]
) -> dict[Key, tuple[Box, np.ndarray]]:
    """The parts of an id image (``ids`` covering ``box``) that fall in each output chunk, each
    cropped to its content; chunks it leaves empty are omitted.

    A tile's owned nuclei reach into the chunks of its neighbours; split once when the tile is
    written, each chunk's painter reads only its own part instead of decoding every neighbour's
    whole window (9 windows of int64 ids per chunk).
    """
    out: dict[Key, tuple[Box, np.ndarray]] = {}
    for key, chunk in chunks:
        inter = chunk.intersect(box)
        if inter is None:
            continue
        part = ids[inter.y0 - box.y0 : inter.y1 - box.y0, inter.x0 - box.x0 : inter.x1 - box.x0]
        piece_box, piece = crop_to_content(inter, part)
        if piece.size:
            out[key] = (piece_box, piece)
    return out
