"""Translation-consistent reading of analysis-resolution pixels.

An analysis pixel (i, j) has its centre at level coordinates ((j + 0.5) f - 0.5, (i + 0.5) f - 0.5)
for a resampling factor f. Its value is bilinear interpolation of the level after a Gaussian
anti-aliasing blur (sigma = (f - 1) / 2 level px when shrinking). Each tile reads its source
region with a margin wider than the blur's support, so the value of a pixel depends only on its
global position, never on the tile that asked for it (DESIGN.md invariant 1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from nucscale.io import ReadOptions, read_region_cached
from nucscale.io._options import DEFAULT
from nucscale.tiling._grid import Box, LevelChoice


def read_analysis_region(
    path: str,
    choice: LevelChoice,
    box: Box,
    options: ReadOptions = DEFAULT,
    fill: int | None = None,
) -> np.ndarray:
    """RGB uint8 pixels of ``box`` (analysis coordinates) from the slide at ``path``, read
    with ``options`` (channel, intensity range, Z plane); beyond the image is ``fill`` (the
    modality's background, so resampling does not blend glass-white into a fluorescence
    image's edge)."""
    if choice.factor == 1.0:
        level, (x, y, w, h) = choice.level, (box.x0, box.y0, box.width, box.height)
        return read_region_cached(path, level, x, y, w, h, options, fill)
    f = choice.factor
    sigma = max(0.0, (f - 1.0) / 2.0)
    margin = math.ceil(4 * sigma) + 2
    # source coordinates of the pixel centres we need
    xs = (np.arange(box.x0, box.x1) + 0.5) * f - 0.5
    ys = (np.arange(box.y0, box.y1) + 0.5) * f - 0.5
    sx0, sy0 = math.floor(xs[0]) - margin, math.floor(ys[0]) - margin
    sx1, sy1 = math.ceil(xs[-1]) + margin + 1, math.ceil(ys[-1]) + margin + 1
    src = read_region_cached(path, choice.level, sx0, sy0, sx1 - sx0, sy1 - sy0, options, fill)
    src = src.astype(np.float32)
    if sigma > 0:
        src = ndi.gaussian_filter(src, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)
    gy, gx = np.meshgrid(ys - sy0, xs - sx0, indexing="ij")
    out = np.empty((box.height, box.width, 3), np.uint8)
    for ch in range(3):
        vals = ndi.map_coordinates(src[..., ch], [gy, gx], order=1, mode="nearest")
        out[..., ch] = np.clip(np.rint(vals), 0, 255).astype(np.uint8)
    return out
