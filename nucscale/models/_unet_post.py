"""U-Net maps -> nucleus instances: marker-controlled watershed, deterministic.

1. foreground mask: ``fg >= fg_threshold``;
2. markers: connected components (4-connectivity) of foreground minus boundary
   (``boundary >= boundary_threshold``) and, given a distance map and ``dist_threshold``, minus
   pixels nearer a nucleus' edge than that (``dist < dist_threshold``: markers are then the
   nuclei's cores, which touching nuclei do not share); markers smaller than ``min_marker`` px
   (default ``min_area // 4``) ignored, so chromatin texture inside a large nucleus does not
   split it;
3. watershed from the markers, restricted to the foreground mask, over the boundary map (or
   ``1 - distance`` in distance mode): pixels flow to the marker they reach through the lowest
   values (by foreground component: :func:`._flood.flood_components`);
4. foreground components no marker reached (thin nuclei whose interior is all boundary)
   become instances of their own;
5. instances under ``min_area`` px or with a bounding box side over ``max_diameter`` dropped,
   and, given ``min_core``, those whose centre-distance peaks below it (no nucleus centre the
   network believes in: on real slides these are fragments of fibre, keratin and ink edges);
   then relabelled 1..n in raster order of their first pixel.

Every step is a pure function of the maps; ties between markers in the watershed are broken
in raster order (:mod:`._flood`), so a nucleus comes out the same in every window that holds
its foreground component whole.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from nucscale.contracts import Segmentation
from nucscale.models._cutoff import at_least, below
from nucscale.models._flood import FOUR, Elevation, flood_components

#: Rows of a window relabelled at once (:func:`_relabel`).
_ROWS = 256


def _relabel(
    labels: np.ndarray, min_area: int, max_diameter: int, peak_ok: np.ndarray | None = None
) -> np.ndarray:
    """Drop small / too-large instances (and those where ``peak_ok[label]`` is False);
    renumber 1..n in raster order of first pixel, in ``labels`` itself (int32; a lookup into a
    new array held a second window of labels at the post-processing's peak).

    In O(pixels) passes (bincount, find_objects): a sort of the whole window (``np.unique``)
    cost a third of the post-processing. The counts are taken a band of rows at a time:
    ``np.bincount`` converts its input to int64, a 50 MiB copy of a 2560² window's labels
    that was the instance task's peak. An instance's first pixel in raster order is on the
    top row of its bounding box: the leftmost of its pixels there, found in that row of the
    box alone (a scan of every top row of the window cost 2/3 of this function).
    """
    n = int(labels.max(initial=0))
    if n == 0:
        return np.zeros_like(labels, np.int32)
    counts = np.zeros(n + 1, np.int64)
    for top in range(0, labels.shape[0], _ROWS):  # bincount takes int64: a band, not the window
        counts += np.bincount(labels[top : top + _ROWS].ravel(), minlength=n + 1)
    keep = (counts >= min_area) & (counts > 0)  # ids may have gaps (dropped markers)
    if peak_ok is not None:
        keep &= peak_ok
    keep[0] = False
    boxes = ndi.find_objects(labels)
    width = labels.shape[1]
    first: list[int] = []
    for lab in np.flatnonzero(keep).tolist():
        rows, cols = boxes[lab - 1]  # a kept label has pixels, so a box
        if max_diameter > 0 and max(rows.stop - rows.start, cols.stop - cols.start) > max_diameter:
            keep[lab] = False
            continue
        top = labels[rows.start, cols]
        first.append(rows.start * width + cols.start + int(np.argmax(top == lab)))
    kept = np.flatnonzero(keep)[np.argsort(np.asarray(first, np.int64), kind="stable")]
    lut = np.zeros(n + 1, labels.dtype)
    lut[kept] = np.arange(1, kept.size + 1, dtype=labels.dtype)
    for top in range(0, labels.shape[0], _ROWS):  # in place, a band at a time
        band = labels[top : top + _ROWS]
        band[...] = lut[band]
    return labels


def _one_minus(dist: np.ndarray) -> Elevation:
    """``1 - dist`` over a box, float32 as from float32 maps; computed only for the boxes the
    watershed floods (:func:`._flood.flood_components`), never for the whole window."""

    def over(box: tuple[slice, slice]) -> np.ndarray:
        return np.float32(1.0) - dist[box]

    return over


def _markers(seeds: np.ndarray, min_marker: int) -> np.ndarray:
    """4-connected components of ``seeds`` of at least ``min_marker`` px. Small ones are
    cleared through the seed pixels alone (a lookup over the whole window cost as much as the
    labelling)."""
    markers, n = ndi.label(seeds, structure=FOUR)
    if n:
        flat = markers.reshape(-1)
        at = np.flatnonzero(flat)
        ids = flat[at]
        small = np.bincount(ids, minlength=n + 1) < min_marker
        flat[at[small[ids]]] = 0
    return markers


def unet_instances(
    fg: np.ndarray,
    boundary: np.ndarray,
    *,
    dist: np.ndarray | None = None,
    fg_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
    dist_threshold: float | None = None,
    min_area: int = 10,
    max_diameter: int = 0,
    min_marker: int | None = None,
    min_core: float | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> Segmentation:
    """Instances from foreground and boundary probability maps.

    Parameters
    ----------
    fg, boundary:
        (h, w) probabilities in [0, 1].
    dist:
        Optional (h, w) normalised distance to the nucleus edge (1 at its centre).
    fg_threshold, boundary_threshold, dist_threshold:
        Cut-offs of the maps (``dist_threshold`` ``None``: markers from the boundary alone).
    min_area:
        Smallest instance kept, px.
    max_diameter:
        Instances with a bounding-box side longer than this are dropped (0: keep all).
    min_marker:
        Smallest marker (seed) kept, px; ``None``: ``min_area // 4``.
    min_core:
        With ``dist``: instances whose highest centre distance is below this are dropped
        (``None``: kept).
    region:
        (x0, y0, x1, y1): foreground components whose bounding box misses it are not
        flooded and give no instances (:func:`._flood.flood_components`); ``None``: all.

    Returns
    -------
    Segmentation
        Labels 1..n (int32), every type 1 ("nucleus") with probability = mean foreground.
    """
    fg = np.asarray(fg)
    # float32 cut-offs: float16 maps (the maps store's) compare as their exact float32 values,
    # without a float32 copy of the window, by their bits (:mod:`._cutoff`)
    mask = at_least(fg, fg_threshold)
    seeds = mask & below(boundary, boundary_threshold)
    elevation: Elevation = np.asarray(boundary)
    if dist is not None and dist_threshold is not None:
        dist = np.asarray(dist)
        seeds &= at_least(dist, dist_threshold)
        elevation = _one_minus(dist)
    min_seed = max(1, min_area // 4 if min_marker is None else min_marker)
    markers = _markers(seeds, min_seed)
    del seeds
    labels = flood_components(elevation, markers, mask, label_unreached=True, region=region)
    del markers, mask
    peak_ok = None
    if dist is not None and min_core is not None and labels.max() > 0:
        # an instance's centre-distance peak reaches min_core iff one of its pixels does: a
        # count of those pixels per label (one pass) gives the same verdict as the per-label
        # maximum (scipy's ndi.maximum sorts the window: 60 % of the post-processing time)
        n_all = int(labels.max())
        core = at_least(dist, min_core)
        peak_ok = np.bincount(labels[core], minlength=n_all + 1) > 0
    labels = _relabel(labels, min_area, max_diameter, peak_ok)
    n_out = int(labels.max())
    # mean foreground per instance (bincount: one pass, where ndi.mean takes several), over the
    # instances' pixels only: the same sums in the same order, without a float64 copy of the
    # whole window (the largest temporary of this function)
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    ids = flat[inside]
    area = np.bincount(ids, minlength=n_out + 1)[1:]
    total = np.bincount(ids, weights=fg.ravel()[inside], minlength=n_out + 1)
    probs = (total[1:] / np.maximum(area, 1)).astype(np.float32)
    return Segmentation(labels, np.ones(n_out, np.int16), probs)
