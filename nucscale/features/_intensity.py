"""Per-nucleus intensity: RGB mean/std and mean haematoxylin / eosin optical density.

Computed with ``numpy.bincount`` over the foreground pixels of the measured labels, in float64,
returned as float32 (the schema's type). Equal to scikit-image ``regionprops_table``'s
``intensity_mean`` / ``intensity_std`` (population std, ``ddof=0``) on the same pixels; the
optical densities are the means of :func:`skimage.color.rgb2hed` channels 0 (haematoxylin) and
1 (eosin), in rgb2hed's unit: ``-ln(I) / ln(10**6)`` projected on the Ruifrok-Johnston stain
vectors, i.e. decadic optical density divided by 6, clipped at 0.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hed

from nucscale.features._schema import INTENSITY


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
    values = rgb_pixels.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for channel, letter in enumerate("rgb"):
        v = values[:, channel]
        mean = np.bincount(rows, weights=v, minlength=n) / counts
        dev = v - mean[rows]  # two-pass, as np.std does: no cancellation for bright channels
        var = np.bincount(rows, weights=dev * dev, minlength=n) / counts
        out[f"mean_{letter}"] = mean.astype(np.float32)
        out[f"std_{letter}"] = np.sqrt(var).astype(np.float32)
    hed = rgb2hed(rgb_pixels)
    out["od_haematoxylin"] = (np.bincount(rows, weights=hed[:, 0], minlength=n) / counts).astype(
        np.float32
    )
    out["od_eosin"] = (np.bincount(rows, weights=hed[:, 1], minlength=n) / counts).astype(
        np.float32
    )
    return {name: out[name] for name in INTENSITY}
