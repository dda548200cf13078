"""HoVer-Net post-processing: NP probability + HV distance maps (+ type probabilities) -> instances.

Follows the official ``__proc_np_hv`` / ``process`` of github.com/vqdang/hover_net
(``models/hovernet/post_proc.py``), re-implemented with scipy / scikit-image (no OpenCV):

1. ``blb``: NP >= threshold, connected components smaller than ``min_area`` removed.
2. HV channels scaled to [0, 1]; Sobel derivative (kernel 21, OpenCV's coefficients and its
   reflect-101 border) of the x map along x and of the y map along y.
3. Energy ``overall = max(1 - norm(sobel_x), 1 - norm(sobel_y))`` inside ``blb``: high where
   the distance maps jump, i.e. on boundaries between nuclei.
4. ``dist = -blur3x3((1 - overall) * blb)``; markers = ``blb`` minus ``overall >= 0.4``, holes
   filled, opened with a 5x5 ellipse, components smaller than ``min_area`` removed.
5. Marker-controlled watershed of ``dist`` within ``blb`` (marker ties broken in raster order,
   :mod:`._flood`, where the official code leaves them to the heap); instances smaller than
   ``min_area`` removed; labels renumbered 1..n in raster order of their first pixel.
6. Type: majority vote of the per-pixel argmax of the type probabilities within the instance,
   background (0) only when nothing else voted; ``type_prob`` = winner's share of the pixels.

Decision (DESIGN invariant 1): the official code min-max normalises the HV maps and the Sobel
responses over the *whole* map it is given, so a pixel's result depends on the tile. That is
``normalise="global"``, kept for comparison with the official output on a single tile. The
default ``normalise="fixed"`` uses fixed ranges instead: HV maps are in [-1, 1] by construction
(``(hv + 1) / 2``, which equals the min-max result whenever a whole nucleus is in view), and
the Sobel response (scaled so a unit ramp gives 1) is mapped to energy by the fixed interval
``[_SOBEL_LOW, _SOBEL_HIGH] = [-0.1, 0.05]`` per pixel, so energy >= 0.4 means a response
<= -0.01: inside one nucleus both HV maps rise monotonically, and a falling edge only occurs at
an instance boundary. Chosen on the DSB 2018 ground-truth targets (tests/infer), where it beats
the global variant (mean PQ 0.96 vs 0.92). Every step is then local, so the output at a pixel
depends only on maps within :data:`CONTEXT` px plus the nucleus it is in.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from scipy.special import comb

from nucscale.contracts import Segmentation
from nucscale.errors import SegmenterError
from nucscale.models._flood import flood_components

SOBEL_KSIZE = 21
#: Sobel response (unit ramp = 1, HV scaled to [0, 1]) mapped to energy 1 and 0 in fixed mode.
_SOBEL_LOW = -0.1
_SOBEL_HIGH = 0.05
_ENERGY_THRESHOLD = 0.4
#: Pixels of map around a pixel the fixed-mode result may depend on (besides its nucleus).
CONTEXT = SOBEL_KSIZE // 2 + 1 + 2

_ELLIPSE5 = np.array(
    [
        [0, 0, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [0, 0, 1, 0, 0],
    ],
    dtype=bool,
)


def _sobel_kernels(ksize: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's separable Sobel kernels (first derivative, smoothing) for an odd ``ksize``."""
    smooth = comb(ksize - 1, np.arange(ksize)).astype(np.float64)
    deriv = np.convolve(comb(ksize - 2, np.arange(ksize - 1)), [-1.0, 1.0])
    return deriv, smooth


def _sobel(img: np.ndarray, axis: int, ksize: int, unit: bool) -> np.ndarray:
    """Derivative along ``axis`` (1 = x, 0 = y), smoothed along the other; reflect-101 border."""
    deriv, smooth = _sobel_kernels(ksize)
    if unit:
        half = ksize // 2
        deriv = deriv / float(np.sum(deriv * (np.arange(ksize) - half)))
        smooth = smooth / smooth.sum()
    out = ndi.correlate1d(img.astype(np.float64), deriv, axis=axis, mode="mirror")
    return ndi.correlate1d(out, smooth, axis=1 - axis, mode="mirror")


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a, dtype=np.float64)
    return (a - lo) / (hi - lo)


def _remove_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    if min_area <= 1 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def _relabel_raster(labels: np.ndarray) -> np.ndarray:
    """Renumber instances 1..n in raster order of their first pixel."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    lut = np.zeros(int(flat.max()) + 1 if flat.size else 1, np.int32)
    lut[ids[np.argsort(first, kind="stable")]] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def _energy(
    hv: np.ndarray, blb: np.ndarray, normalise: Literal["fixed", "global"], ksize: int
) -> np.ndarray:
    """Boundary energy in [0, 1] inside ``blb`` (0 outside)."""
    energies = []
    for axis, channel in ((1, hv[0]), (0, hv[1])):
        if normalise == "global":
            s = _sobel(_minmax(channel), axis, ksize, unit=False)
            energies.append(1.0 - _minmax(s))
        else:
            scaled = np.clip((channel.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)
            s = _sobel(scaled, axis, ksize, unit=True)
            energies.append(np.clip((_SOBEL_HIGH - s) / (_SOBEL_HIGH - _SOBEL_LOW), 0.0, 1.0))
    overall = np.maximum(energies[0], energies[1]) - (1.0 - blb)
    return np.clip(overall, 0.0, None)


def _vote_types(labels: np.ndarray, n: int, tp_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority type per instance (background only if alone) and the winner's pixel share."""
    nt = tp_prob.shape[0]
    votes = np.argmax(tp_prob, axis=0)
    inside = labels > 0
    counts = np.bincount(
        labels[inside].astype(np.int64) * nt + votes[inside], minlength=(n + 1) * nt
    ).reshape(n + 1, nt)[1:]
    winner = np.argmax(counts, axis=1)
    if nt > 1:
        fg_winner = 1 + np.argmax(counts[:, 1:], axis=1)
        has_fg = counts[np.arange(n), fg_winner] > 0
        winner = np.where((winner == 0) & has_fg, fg_winner, winner)
    area = counts.sum(axis=1)
    prob = counts[np.arange(n), winner] / np.maximum(area, 1)
    return winner.astype(np.int16), prob.astype(np.float32)


def hovernet_instances(
    np_prob: np.ndarray,
    hv: np.ndarray,
    tp_prob: np.ndarray | None = None,
    *,
    np_threshold: float = 0.5,
    min_area: int = 10,
    normalise: Literal["fixed", "global"] = "fixed",
    sobel_ksize: int = SOBEL_KSIZE,
    region: tuple[int, int, int, int] | None = None,
) -> Segmentation:
    """Instances from HoVer-Net maps (official marker-controlled watershed, see module doc).

    Parameters
    ----------
    np_prob:
        (h, w) nucleus probability.
    hv:
        (2, h, w) horizontal and vertical distance maps in [-1, 1].
    tp_prob:
        (T, h, w) type probabilities (channel 0 = background) or ``None`` (all types 1).
    np_threshold:
        Foreground where ``np_prob >= np_threshold``.
    min_area:
        Smaller foreground blobs, markers and instances are removed, px.
    normalise:
        ``"fixed"`` (translation consistent, default) or ``"global"`` (official min-max over the
        whole map).
    region:
        (x0, y0, x1, y1): foreground components whose bounding box misses it give no instances
        (:func:`._flood.flood_components`); ``None``: all.

    Returns
    -------
    Segmentation
        int32 labels 1..n in raster order, int16 types, float32 type probabilities.
    """
    np_prob = np.asarray(np_prob)
    hv = np.asarray(hv)
    if np_prob.ndim != 2 or hv.shape != (2, *np_prob.shape):
        raise SegmenterError(
            f"HoVer-Net maps: expected np (h, w) and hv (2, h, w), got {np_prob.shape} and "
            f"{hv.shape}"
        )
    if tp_prob is not None and (tp_prob.ndim != 3 or tp_prob.shape[1:] != np_prob.shape):
        raise SegmenterError(f"HoVer-Net maps: tp must be (T, h, w), got {tp_prob.shape}")
    if normalise not in ("fixed", "global"):
        raise SegmenterError(f"normalise must be 'fixed' or 'global', got {normalise!r}")

    blb_labels, _ = ndi.label(np_prob >= np_threshold)
    blb = (_remove_small(blb_labels, min_area) > 0).astype(np.float64)
    if not blb.any():
        return _empty(np_prob.shape)

    overall = _energy(hv, blb, normalise, sobel_ksize)
    dist = (1.0 - overall) * blb
    blur = np.array([0.25, 0.5, 0.25])
    dist = -ndi.correlate1d(
        ndi.correlate1d(dist, blur, axis=0, mode="mirror"), blur, 1, mode="mirror"
    )

    marker = (blb > 0) & ~(overall >= _ENERGY_THRESHOLD)
    marker = ndi.binary_fill_holes(marker)
    marker = ndi.binary_erosion(marker, _ELLIPSE5, border_value=1)
    marker = ndi.binary_dilation(marker, _ELLIPSE5)
    markers, _ = ndi.label(marker)
    markers = _remove_small(markers, min_area)

    # float32: marker ties then cost O(markers) to order (a float64 map would need a sort of the
    # window, ~2 s); values closer than float32 resolves (< 6e-8 of [-1, 0]) go by age instead
    labels = flood_components(dist.astype(np.float32), markers, blb > 0, region=region)
    labels = _relabel_raster(_remove_small(labels.astype(np.int32), min_area))
    n = int(labels.max())
    if tp_prob is None:
        return Segmentation(labels, np.ones(n, np.int16), np.ones(n, np.float32))
    types, probs = _vote_types(labels, n, np.asarray(tp_prob))
    return Segmentation(labels, types, probs)


def _empty(shape: tuple[int, ...]) -> Segmentation:
    return Segmentation(np.zeros(shape, np.int32), np.zeros(0, np.int16), np.zeros(0, np.float32))
