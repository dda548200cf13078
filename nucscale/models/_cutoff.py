"""Cut-offs of stored maps: ``maps >= t`` and ``maps < t`` with a float32 ``t``, exactly.

The maps store holds float16 (:mod:`nucscale.tiling._maps`). numpy compares a float16 array
with a float32 cut-off by converting every element to float32 first: ~13 ms for a 2560²
window, four such comparisons per U-Net window. For non-negative, non-NaN float16 the order of
the values is the order of their bit patterns as unsigned 16-bit integers, so the same answer
comes from comparing those bits with the bits of the smallest float16 at or above the cut-off
(0.4 ms). numpy has no such path; it is written here, and taken only where it is exact: a
float16 array whose largest bit pattern is at most +inf's (no sign bit set, no NaN) and a
positive, finite cut-off. Anything else is compared the ordinary way.
"""

from __future__ import annotations

import numpy as np

#: Bit pattern of float16 +inf; larger patterns are NaNs or carry the sign bit.
_INF16 = 0x7C00


def _bits_cutoff(values: np.ndarray, cutoff: np.float32) -> int | None:
    """The uint16 bits of the smallest float16 >= ``cutoff``, when comparing bits is exact for
    ``values``; else None."""
    if values.dtype != np.float16 or not (np.isfinite(cutoff) and cutoff > 0) or values.size == 0:
        return None
    if int(values.view(np.uint16).max()) > _INF16:  # a negative value or a NaN
        return None
    if cutoff > np.finfo(np.float16).max:
        return _INF16  # only +inf is at or above it
    h = np.float16(cutoff)  # nearest; step up if it rounded below the cut-off
    if np.float32(h) < cutoff:
        h = np.nextafter(h, np.float16(np.inf))
    return int(np.asarray(h).view(np.uint16))


def at_least(values: np.ndarray, cutoff: float) -> np.ndarray:
    """``values >= np.float32(cutoff)`` (bool, same shape), exactly; fast for float16 maps."""
    values = np.asarray(values)
    t = np.float32(cutoff)
    bits = _bits_cutoff(values, t)
    if bits is None:
        return values >= t
    return values.view(np.uint16) >= np.uint16(bits)


def below(values: np.ndarray, cutoff: float) -> np.ndarray:
    """``values < np.float32(cutoff)`` (bool, same shape), exactly; fast for float16 maps."""
    values = np.asarray(values)
    t = np.float32(cutoff)
    bits = _bits_cutoff(values, t)
    if bits is None:
        return values < t
    return values.view(np.uint16) < np.uint16(bits)
