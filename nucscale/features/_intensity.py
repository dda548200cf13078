"""Per-nucleus intensity: RGB mean/std and mean haematoxylin / eosin optical density.

Per-nucleus sums over the foreground pixels of the measured labels, in float64, returned as
float32 (the schema's type). The pixels go through in runs of :data:`_RUN`, added in their
order (``np.add.at`` into one accumulator: the same additions in the same order as one
``np.bincount`` over them all, so the values do not depend on the run length). Equal to
scikit-image ``regionprops_table``'s ``intensity_mean`` / ``intensity_std`` (population std,
``ddof=0``) on the same pixels; the optical densities are the means of
:func:`skimage.color.rgb2hed` channels 0 (haematoxylin) and 1 (eosin), in rgb2hed's unit:
``-ln(I) / ln(10**6)`` projected on the Ruifrok-Johnston stain vectors,
i.e. decadic optical density divided by 6, clipped at 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from skimage.color import rgb2hed

from nucscale.features._schema import INTENSITY

#: Pixels per run: float64 copies of a run, not of all the nuclei's pixels at once (rgb2hed
#: makes several; +36 MiB traced for the 373,000 nucleus pixels of a 2048² mosaic tile).
_RUN = 1 << 16


def intensity(rgb_pixels: np.ndarray, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Intensity columns of ``n`` nuclei from their pixels.

    Parameters
    ----------
    rgb_pixels:
        (p, 3) uint8, the RGB values of every pixel that belongs to a measured nucleus.
    rows:
        (p,) int, the output row (nucleus index in ``0..n-1``) of each pixel.
    n:
        Number of nuclei (at least 1); every index must have at least one pixel.

    Returns
    -------
    dict
        One float32 array of length ``n`` per name in :data:`~nucscale.features._schema.INTENSITY`.
    """
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    sums, od = np.zeros((3, n)), np.zeros((2, n))
    for part, at in _parts(rgb_pixels, rows):
        for channel in range(3):
            np.add.at(sums[channel], at, part[:, channel].astype(np.float64))
        hed = rgb2hed(part)
        np.add.at(od[0], at, hed[:, 0])
        np.add.at(od[1], at, hed[:, 1])
    mean = sums / counts
    squares = np.zeros((3, n))  # two-pass, as np.std does: no cancellation for bright channels
    for part, at in _parts(rgb_pixels, rows):
        for channel in range(3):
            dev = part[:, channel] - mean[channel][at]
            np.add.at(squares[channel], at, dev * dev)
    out: dict[str, np.ndarray] = {}
    for channel, letter in enumerate("rgb"):
        out[f"mean_{letter}"] = mean[channel].astype(np.float32)
        out[f"std_{letter}"] = np.sqrt(squares[channel] / counts).astype(np.float32)
    out["od_haematoxylin"] = (od[0] / counts).astype(np.float32)
    out["od_eosin"] = (od[1] / counts).astype(np.float32)
    return {name: out[name] for name in INTENSITY}


def _parts(rgb_pixels: np.ndarray, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pixels and their output rows in runs of :data:`_RUN`, in order."""
    for a in range(0, rows.shape[0], _RUN):
        yield rgb_pixels[a : a + _RUN], rows[a : a + _RUN]
