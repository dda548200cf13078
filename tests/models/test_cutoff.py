"""Cut-offs of float16 maps by their bits equal numpy's float32 comparisons, for every value."""

from __future__ import annotations

import numpy as np
import pytest

from nucscale.models._cutoff import at_least, below

ALL16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
NON_NEGATIVE = ALL16[ALL16.view(np.uint16) <= 0x7C00]  # +0 .. +inf, no NaN: the fast path
CUTOFFS = [0.5, 0.4, 0.1, 1 / 3, 0.999, 1.0, 1e-8, 6e-8, 1e-4, 65504.0, 65505.0, 1e6,
           0.0, -0.5, float("inf"), float("nan")]  # fmt: skip


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("values", [NON_NEGATIVE, ALL16], ids=["non-negative", "all"])
def test_every_float16_compares_as_numpy_does(values: np.ndarray, cutoff: float) -> None:
    with np.errstate(invalid="ignore"):
        expect_ge = values >= np.float32(cutoff)
        expect_lt = values < np.float32(cutoff)
    assert np.array_equal(at_least(values, cutoff), expect_ge)
    assert np.array_equal(below(values, cutoff), expect_lt)
    # both outcomes occur for the cut-offs inside the range, so the test can tell them apart
    if 0 < cutoff < 65504:
        assert expect_ge.any() and expect_lt.any()


def test_strided_windows_and_other_dtypes() -> None:
    rng = np.random.default_rng(3)
    maps = rng.random((3, 64, 80)).astype(np.float16)
    window = maps[1, 5:50:2, 7:70:3]  # a strided view, as a window of the store's maps
    assert np.array_equal(at_least(window, 0.5), window >= np.float32(0.5))
    assert np.array_equal(below(window, 0.35), window < np.float32(0.35))
    as32 = window.astype(np.float32)
    assert np.array_equal(at_least(as32, 0.35), as32 >= np.float32(0.35))
    assert at_least(np.zeros((0, 4), np.float16), 0.5).shape == (0, 4)
