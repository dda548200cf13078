"""Haralick texture of many nuclei at once, as CellProfiler's MeasureTexture computes it.

CellProfiler measures texture with ``mahotas.features.haralick(pixels, distance=d,
ignore_zeros=True)`` on each object (pixels outside it set to 0), grey levels 1..L inside: a
symmetric grey-level co-occurrence matrix per direction (0°, 45°, 90°, 135°), normalised, and
Haralick's 13 features from it, with mahotas's conventions (sum variance about the sum average;
difference variance the variance of the entries of p_{x-y}; log2 entropies). This module
builds the co-occurrence counts of every nucleus of a window with one ``bincount`` per
direction and evaluates the 13 formulas on all of them together, instead of one mahotas call
per nucleus (why it is hand-written; equality with mahotas is tested on real nuclei). The
reported value of each feature is the mean over the directions in which the nucleus has at
least one pixel pair (a one-pixel-wide nucleus has none in some).
"""

from __future__ import annotations

import numpy as np

from nucscale.features._owners import owned_pixels

#: Haralick's 13 features, in mahotas's (and CellProfiler's) order.
HARALICK = (
    "angular_second_moment",
    "contrast",
    "correlation",
    "variance",
    "inverse_difference_moment",
    "sum_average",
    "sum_variance",
    "sum_entropy",
    "entropy",
    "difference_variance",
    "difference_entropy",
    "info_meas_corr_1",
    "info_meas_corr_2",
)
#: (row, column) steps of the four directions, as mahotas's 2-D deltas.
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


def cooccurrence(
    grey: np.ndarray, labels: np.ndarray, ids: np.ndarray, levels: int, distance: int = 1
) -> np.ndarray:
    """(n, 4, L + 1, L + 1) symmetric co-occurrence counts of the nuclei ``ids``.

    ``grey`` holds grey levels 1..L (``levels``) on the nuclei's pixels; a pair counts when
    both pixels belong to the same nucleus. Row and column 0 stay empty (mahotas's
    ``ignore_zeros``). Work is proportional to the nuclei's pixels, not the window's."""
    n, size = len(ids), levels + 1
    owner_img, rr, cc, owner = owned_pixels(labels, ids)
    g = grey[rr, cc].astype(np.int64)
    base = (owner * size + g) * size
    h, w = labels.shape
    counts = np.zeros((n, len(DIRECTIONS), size, size), dtype=np.float64)
    for d, (dr, dc) in enumerate(DIRECTIONS):
        r2, c2 = rr + dr * distance, cc + dc * distance
        inside = (r2 < h) & (c2 >= 0) & (c2 < w)
        same = np.zeros(len(rr), bool)
        same[inside] = owner_img[r2[inside], c2[inside]] == owner[inside]
        flat = np.bincount(base[same] + grey[r2[same], c2[same]], minlength=n * size * size)
        c = flat.reshape(n, size, size).astype(np.float64)
        counts[:, d] = c + c.transpose(0, 2, 1)
    return counts


def _entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log2 p over the last axis (0 log 0 = 0)."""
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log2(safe)).sum(axis=-1)


def haralick(counts: np.ndarray, top: np.ndarray) -> dict[str, np.ndarray]:
    """The 13 features of each nucleus, averaged over its directions with pairs (NaN when it
    has none), from :func:`cooccurrence` counts. ``top`` is each nucleus's highest grey level:
    mahotas sizes a nucleus's matrix by it, which only the difference variance (a variance of
    the entries of p_{x-y}, over ``top + 1`` entries) depends on."""
    n, dirs, size, _ = counts.shape
    total = counts.sum(axis=(2, 3))
    valid = total > 0
    p = counts / np.where(valid, total, 1.0)[..., None, None]
    k = np.arange(size, dtype=np.float64)
    i, j = np.meshgrid(k, k, indexing="ij")
    px, py = p.sum(axis=2), p.sum(axis=3)  # as mahotas: px = p.sum(0), py = p.sum(1)
    ux, uy = px @ k, py @ k
    vx, vy = px @ k**2 - ux**2, py @ k**2 - uy**2
    sx, sy = np.sqrt(np.maximum(vx, 0)), np.sqrt(np.maximum(vy, 0))
    flat = p.reshape(n, dirs, size * size)
    plus = np.zeros((n, dirs, 2 * size))
    minus = np.zeros((n, dirs, size))
    s, m = (i + j).astype(np.int64).ravel(), np.abs(i - j).astype(np.int64).ravel()
    for idx in range(size * size):
        plus[..., s[idx]] += flat[..., idx]
        minus[..., m[idx]] += flat[..., idx]
    tk = np.arange(2 * size, dtype=np.float64)
    f: dict[str, np.ndarray] = {}
    f["angular_second_moment"] = (flat * flat).sum(axis=-1)
    f["contrast"] = minus @ k**2
    both = (sx > 0) & (sy > 0)
    corr = ((flat @ (i * j).ravel()) - ux * uy) / np.where(both, sx * sy, 1.0)
    f["correlation"] = np.where(both, corr, 1.0)
    f["variance"] = vx
    f["inverse_difference_moment"] = flat @ (1.0 / (1.0 + (i - j) ** 2)).ravel()
    f["sum_average"] = plus @ tk
    f["sum_variance"] = plus @ tk**2 - f["sum_average"] ** 2
    f["sum_entropy"] = _entropy(plus)
    f["entropy"] = _entropy(flat)
    entries = (np.asarray(top, np.float64) + 1)[:, None]
    f["difference_variance"] = (minus * minus).sum(axis=-1) / entries - (
        minus.sum(axis=-1) / entries
    ) ** 2
    f["difference_entropy"] = _entropy(minus)
    hx, hy = _entropy(px), _entropy(py)
    cross = px[..., :, None] * py[..., None, :]
    cross = np.where(cross == 0, 1.0, cross).reshape(n, dirs, size * size)
    hxy1 = -(flat * np.log2(cross)).sum(axis=-1)
    hxy2 = _entropy(cross)
    hmax = np.maximum(hx, hy)
    f["info_meas_corr_1"] = (f["entropy"] - hxy1) / np.where(hmax == 0, 1.0, hmax)
    f["info_meas_corr_2"] = np.sqrt(np.maximum(0, 1 - np.exp(-2 * (hxy2 - f["entropy"]))))
    used = valid.sum(axis=1)
    mean = {
        name: np.where(valid, f[name], 0.0).sum(axis=1) / np.maximum(used, 1) for name in HARALICK
    }
    return {name: np.where(used > 0, mean[name], np.nan) for name in HARALICK}


def top_levels(grey: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each nucleus's highest grey level."""
    _, rr, cc, owner = owned_pixels(labels, ids)
    top = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(top, owner, grey[rr, cc])
    return top


def quantize(values: np.ndarray, low: float, high: float, levels: int) -> np.ndarray:
    """Values to grey levels 1..``levels`` over the fixed range [low, high] (clipped): the
    same levels for a nucleus whatever tile it is measured in."""
    scaled = (np.asarray(values, np.float64) - low) / (high - low)
    return (np.clip(np.floor(scaled * levels), 0, levels - 1) + 1).astype(np.int64)
