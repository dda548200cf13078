"""The pieces of a 2-D block that lie in one chunk each of a chunked array (Zarr).

zarr decodes every chunk a selection touches at once before it copies the selection out; a
block spanning several chunks (a tile's window with its halo, a pyramid level's source block)
then holds all of them decoded together. Reading the block piece by piece holds one decoded
chunk at a time. Hand-written: zarr exposes no per-chunk iterator over a selection for reading,
and the arithmetic is two ranges.
"""

from __future__ import annotations

from collections.abc import Iterator


def chunk_pieces(
    extent: tuple[int, ...], chunks: tuple[int, ...], rows: slice, cols: slice
) -> Iterator[tuple[slice, slice]]:
    """The pieces of the block ``(rows, cols)`` (non-negative starts, clipped to ``extent``,
    the array's height and width), each inside one chunk of size ``chunks``, in row-major
    order; none when the block lies outside the array."""
    (h, w), (ch, cw) = extent, chunks  # two each
    r1, c1 = min(rows.stop, h), min(cols.stop, w)
    if rows.start >= r1 or cols.start >= c1:
        return
    for a in range(rows.start - rows.start % ch, r1, ch):
        for b in range(cols.start - cols.start % cw, c1, cw):
            yield (
                slice(max(a, rows.start), min(a + ch, r1)),
                slice(max(b, cols.start), min(b + cw, c1)),
            )
