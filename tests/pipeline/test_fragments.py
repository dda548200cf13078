"""The owned-nuclei label fragments that paint tasks read: each output chunk reads back exactly
its own part of a tile's nuclei, as int64 ids rebuilt from the stored int32 ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nucscale.pipeline._fragments import load_piece, save_pieces
from nucscale.stitch import id_base
from nucscale.tiling import Box


def test_each_chunk_reads_back_its_own_piece_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = id_base(1_000_003)  # ids above 2**32: the high bits must survive the int32 ranks
    ranks = np.where(rng.random((70, 90)) < 0.4, rng.integers(1, 500, (70, 90)), 0)
    window = ranks.astype(np.int32)[5:, 3:]  # a strided view, as split_by_chunk hands out
    pieces = {(1, 2): (Box(1000, 2000, 1087, 2065), window),
              (1, 3): (Box(1090, 2000, 1091, 2001), np.array([[7]], np.int32))}  # fmt: skip
    path = tmp_path / "r00001_c00002.npz"
    save_pieces(path, pieces, base)
    for (row, col), (box, part) in pieces.items():
        piece = load_piece(path, row, col)
        assert piece is not None
        got_box, got = piece
        assert got_box == box
        assert got.dtype == np.int64 and got.shape == part.shape
        want = np.where(part > 0, base + part.astype(np.int64), 0)
        np.testing.assert_array_equal(got, want)
        assert got.max() > 2**32 and (got[part == 0] == 0).all()
    assert load_piece(path, 2, 2) is None  # a chunk this tile's nuclei do not reach
    empty = tmp_path / "empty.npz"
    save_pieces(empty, {}, base)
    assert load_piece(empty, 1, 2) is None
    blank = tmp_path / "blank.npz"  # a part cropped to nothing reads back as an empty image
    save_pieces(blank, {(0, 0): (Box(4, 4, 4, 4), np.zeros((0, 0), np.int32))}, base)
    got = load_piece(blank, 0, 0)
    assert got is not None and got[0] == Box(4, 4, 4, 4) and got[1].shape == (0, 0)
