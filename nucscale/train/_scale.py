"""Pixel sizes of training images, and resampling them to the analysis pixel size.

Most labelled nucleus collections (DSB 2018 among them) record no pixel size, and mix
magnifications: in ``dsb2018-dev`` the H&E fields of 512 x 680 px have a median nucleus
diameter of 33-50 px, those of 524 x 348 px about 18 px, and fluorescence fields range from 8.5
to 100 px. Training on all of them as one pixel size teaches a network nuclei of the wrong
physical size. So every image gets a pixel size, by one rule applied the same way to every
image that has none recorded (:func:`estimate_mpp`):

1. ``d`` = median equivalent diameter of the ground-truth nuclei, px;
2. the raw estimate ``REFERENCE_DIAMETER_UM / d`` says what pixel size would make that median
   nucleus 8 µm across (a typical interphase nucleus in tissue and in culture: lymphocytes
   6-7 µm, epithelial and tumour nuclei 8-12 µm);
3. it is rounded, in log scale, to the nearest power-of-two pixel size of the objective series
   ``..., 0.125, 0.25, 0.5, 1, 2, ...`` µm/px (63-100x, 40x, 20x, 10x, 5x with a ~6.5 µm camera
   or scanner pixel).

Step 3 keeps the real spread of nucleus sizes within a magnification (the rule only decides
which magnification an image was taken at), so a network still meets large and small nuclei,
as in a user's slide, instead of nuclei all rescaled to one median. A recorded ``mpp`` in the
folder's ``index.json`` always wins over the rule.

Resampling (:func:`resample_pair`) uses the formula the pipeline reads slides with
(:mod:`nucscale.tiling._resample`: Gaussian anti-aliasing of sigma ``(f - 1) / 2`` when shrinking,
bilinear interpolation at analysis pixel centres), so training sees the pixels a user's
calibrated image gives the network; labels take the nearest source pixel at the same centres.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

#: Median nucleus diameter, µm, that :func:`estimate_mpp` assumes.
REFERENCE_DIAMETER_UM = 9.0


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent diameter (px) of the instances in ``labels`` (0 = background)."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return float("nan")
    return float(np.median(2.0 * np.sqrt(areas / np.pi)))


def estimate_mpp(labels: np.ndarray) -> float:
    """Pixel size (µm/px) of an image from its ground truth, by the module's rule.

    Returns NaN for an image without nuclei.
    """
    d = median_diameter(labels)
    if not d > 0:
        return float("nan")
    return float(2.0 ** round(math.log2(REFERENCE_DIAMETER_UM / d)))


def _centres(n_out: int, f: float) -> np.ndarray:
    """Source coordinates of the centres of ``n_out`` output pixels for factor ``f``."""
    return (np.arange(n_out) + 0.5) * f - 0.5


def resample_pair(
    image: np.ndarray, labels: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels resampled by ``factor`` source px per output px (> 1 shrinks).

    Image: Gaussian blur (sigma ``(factor - 1) / 2`` when shrinking) then bilinear at the output
    pixel centres, edges repeated, as :func:`nucscale.tiling.read_analysis_region`; labels: the
    nearest source pixel. Output size is ``round(side / factor)``.
    """
    if factor == 1.0:
        return image, labels
    h, w = labels.shape
    oh, ow = max(1, round(h / factor)), max(1, round(w / factor))
    ys, xs = _centres(oh, factor), _centres(ow, factor)
    src = image.astype(np.float32)
    sigma = max(0.0, (factor - 1.0) / 2.0)
    if sigma > 0:
        src = ndi.gaussian_filter(src, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    out = np.empty((oh, ow, image.shape[2]), np.uint8)
    for ch in range(image.shape[2]):
        vals = ndi.map_coordinates(src[..., ch], [gy, gx], order=1, mode="nearest")
        out[..., ch] = np.clip(np.rint(vals), 0, 255).astype(np.uint8)
    iy = np.clip(np.rint(ys).astype(np.int64), 0, h - 1)
    ix = np.clip(np.rint(xs).astype(np.int64), 0, w - 1)
    return out, np.ascontiguousarray(labels[np.ix_(iy, ix)], dtype=np.int32)
