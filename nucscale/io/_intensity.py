"""Samples of more than 8 bits (and floats) to uint8, by one window per slide.

A tile's pixels must not depend on which tile asks for them (tiled = whole), so the mapping is
fixed once per slide, when it is opened, and every read applies it:
``u8 = round(clip((v - low) / (high - low), 0, 1) * 255)``.

The window, in order:

1. ``--intensity-range LOW HIGH`` (:class:`~nucscale.io._options.ReadOptions`);
2. integer samples: ``low = 0`` and ``high`` = the top of the bit depth its values use: the
   smallest ``2**k - 1`` (k >= 8) at or above the largest sample of the slide's
   lowest-resolution level, capped by the bit depth the file declares (DICOM ``BitsStored``).
   A 12-bit camera's 16-bit file maps 4095 to 255; a 16-bit file of values 0-235 reads
   exactly as its 8-bit copy, whatever bit depth it declares (cameras often declare 16).
   Dividing by the dtype's range instead (65535) turned such files black; stretching to each
   image's own percentiles would make a dim and a bright slide look alike;
3. floats: the 0.1st and 99.9th percentiles of that lowest level (floats carry no bit depth).

uint8 samples are read as they are.
"""

from __future__ import annotations

import math

import numpy as np

#: Percentiles of the lowest level that bound a float image's window.
FLOAT_PERCENTILES = (0.1, 99.9)


def window_of(
    sample: np.ndarray,
    *,
    bits_stored: int | None = None,
    override: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """The (low, high) sample values mapped to 0 and 255; ``None`` for uint8 without override.

    ``sample`` is the slide's lowest-resolution level (any shape; every value counts).
    """
    if override is not None:
        return (float(override[0]), float(override[1]))
    if sample.dtype == np.uint8 or sample.dtype == np.bool_:
        return None
    if np.issubdtype(sample.dtype, np.integer):
        top = int(sample.max(initial=0))
        bits = max(8, math.ceil(math.log2(top + 1))) if top > 0 else 8
        if bits_stored is not None and 8 <= bits_stored < bits:
            bits = bits_stored  # values above the declared depth are clipped
        return (0.0, float(2**bits - 1))
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, FLOAT_PERCENTILES))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def to_uint8(arr: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """``arr`` mapped through ``window`` to uint8 (same shape); uint8 without a window as is."""
    if window is None:
        if arr.dtype == np.uint8:
            return arr
        if arr.dtype == np.bool_:
            return arr.astype(np.uint8) * np.uint8(255)
        raise ValueError(f"{arr.dtype} samples need an intensity window")
    lo, hi = window
    x = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def describe(window: tuple[float, float] | None, source: str) -> dict[str, object]:
    """The provenance entry of a window: ``intensity_range`` [low, high], ``intensity_source``."""
    return {
        "intensity_range": None if window is None else [window[0], window[1]],
        "intensity_source": source,
    }
