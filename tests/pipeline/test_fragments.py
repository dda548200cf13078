"""The owned-nuclei label fragments that paint tasks read: exact round trip of each chunk's
piece, and fragments of earlier versions (one piece for the whole window: Blosc, or zlib npz)
still read on resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nucscale.pipeline._tasks import _FRAGMENT_CODEC, _load_piece, _save_npz
from nucscale.tiling import Box


def test_each_chunk_reads_back_its_own_piece_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = np.where(rng.random((70, 90)) < 0.4, rng.integers(2**40, 2**40 + 500, (70, 90)), 0)
    pieces = {(1, 2): (Box(1000, 2000, 1090, 2070), ids), (1, 3): (Box(1090, 2000, 1091, 2001),
              np.array([[7]], np.int64))}  # fmt: skip
    path = tmp_path / "r00001_c00002.npz"
    _save_npz(path, pieces)
    for (row, col), (box, want) in pieces.items():
        piece = _load_piece(path, row, col)
        assert piece is not None
        got_box, got = piece
        assert got_box == box
        assert got.dtype == np.int64 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert _load_piece(path, 2, 2) is None  # a chunk this tile's nuclei do not reach
    empty = tmp_path / "empty.npz"
    _save_npz(empty, {})
    assert _load_piece(empty, 1, 2) is None


def test_fragments_of_earlier_versions_still_read(tmp_path: Path) -> None:
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    zlib = tmp_path / "zlib.npz"
    with zlib.open("wb") as fh:
        np.savez_compressed(fh, box=np.array([0, 0, 4, 3]), ids=ids)
    whole = tmp_path / "blosc.npz"
    with whole.open("wb") as fh:
        packed = np.frombuffer(_FRAGMENT_CODEC.encode(ids), np.uint8)
        np.savez(fh, box=np.array([0, 0, 4, 3]), shape=np.array(ids.shape), ids_zstd=packed)
    for path in (zlib, whole):  # the whole window, whichever chunk asks: paint crops it
        for row, col in ((0, 0), (5, 7)):
            piece = _load_piece(path, row, col)
            assert piece is not None
            assert piece[0] == Box(0, 0, 4, 3)
            got = piece[1]
            np.testing.assert_array_equal(got, ids)
