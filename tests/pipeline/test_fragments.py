"""The owned-nuclei label fragments that paint tasks read: exact round trip, and fragments of
an earlier version (zlib npz) still read on resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nucscale.pipeline._tasks import _load_npz, _save_npz
from nucscale.tiling import Box


def test_a_fragment_reads_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = np.where(rng.random((70, 90)) < 0.4, rng.integers(2**40, 2**40 + 500, (70, 90)), 0)
    box = Box(1000, 2000, 1090, 2070)
    path = tmp_path / "r00001_c00002.npz"
    _save_npz(path, box, ids)
    got_box, got = _load_npz(path)
    assert got_box == box
    assert got.dtype == np.int64 and got.shape == (70, 90)
    np.testing.assert_array_equal(got, ids)
    empty = tmp_path / "empty.npz"
    _save_npz(empty, Box(5, 5, 5, 5), np.zeros((0, 0), np.int64))
    assert _load_npz(empty)[1].shape == (0, 0)


def test_a_fragment_of_an_earlier_version_still_reads(tmp_path: Path) -> None:
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    path = tmp_path / "old.npz"
    with path.open("wb") as fh:
        np.savez_compressed(fh, box=np.array([0, 0, 4, 3]), ids=ids)
    box, got = _load_npz(path)
    assert box == Box(0, 0, 4, 3)
    np.testing.assert_array_equal(got, ids)
