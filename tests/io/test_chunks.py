"""chunk_pieces: a block cut along chunk borders, clipped to the array."""

from __future__ import annotations

import numpy as np
import pytest

from nucscale.io._chunks import chunk_pieces


@pytest.mark.parametrize(
    ("rows", "cols"),
    [(slice(0, 10), slice(0, 7)), (slice(3, 9), slice(5, 6)), (slice(4, 40), slice(2, 30))],
)
def test_pieces_cover_the_clipped_block_once_each_inside_one_chunk(
    rows: slice, cols: slice
) -> None:
    extent, chunks = (10, 7), (4, 3)
    seen = np.zeros(extent, int)
    for ys, xs in chunk_pieces(extent, chunks, rows, cols):
        assert ys.start < ys.stop and xs.start < xs.stop
        assert ys.start // 4 == (ys.stop - 1) // 4 and xs.start // 3 == (xs.stop - 1) // 3
        seen[ys, xs] += 1
    want = np.zeros(extent, int)
    want[rows, cols] = 1  # numpy clips to the array the same way
    np.testing.assert_array_equal(seen, want)


def test_a_block_outside_the_array_has_no_pieces() -> None:
    assert list(chunk_pieces((10, 7), (4, 3), slice(10, 20), slice(0, 7))) == []
    assert list(chunk_pieces((10, 7), (4, 3), slice(0, 10), slice(7, 9))) == []


def test_pieces_come_in_row_major_order() -> None:
    pieces = list(chunk_pieces((8, 6), (4, 3), slice(2, 6), slice(1, 5)))
    assert pieces == [
        (slice(2, 4), slice(1, 3)), (slice(2, 4), slice(3, 5)),
        (slice(4, 6), slice(1, 3)), (slice(4, 6), slice(3, 5)),
    ]  # fmt: skip
