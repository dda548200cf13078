"""Nuclei from a foreground probability map with fixed parameters (distance-transform watershed).

Used by models whose network returns only a foreground probability (e.g. bioimage.io
"UNet 2D Nuclei Broad", :mod:`nucscale.models.bioimageio`). There is no per-image statistic,
so the result at a pixel depends only on the map around it (DESIGN invariant 1).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential

from nucscale.models._flood import flood


def watershed_instances(
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    h: float = 2.0,
    min_size: int = 20,
    max_diameter: int = 0,
) -> np.ndarray:
    """Instances from a foreground probability map, with fixed parameters.

    Foreground is ``prob > threshold``; seeds are the h-maxima of its Euclidean distance
    transform (a component too thin for an h-maximum gets one seed of its own); a marker
    watershed on the negated distance splits touching nuclei; instances smaller than
    ``min_size`` px, or (when ``max_diameter`` > 0) with a bounding box side longer than it,
    are removed. Returns (h, w) int32 labels 1..n in raster order of their seeds.
    """
    fg = prob > threshold
    if not fg.any():
        return np.zeros(prob.shape, np.int32)
    dist = ndi.distance_transform_edt(fg)
    seeds = (h_maxima(dist, h) > 0) & fg
    markers, n = ndi.label(seeds)
    comps, _ = ndi.label(fg)
    unseeded = np.setdiff1d(np.unique(comps[fg]), np.unique(comps[seeds]))
    if unseeded.size:  # thin components: their own seed
        extra = np.isin(comps, unseeded)
        extra_lab, _ = ndi.label(extra)
        markers[extra] = extra_lab[extra] + n
    # float32 (exact for distances up to ~2,000 px) keeps the tie-break O(markers), see _flood
    labels = flood((-dist).astype(np.float32), markers, fg)
    ids, areas = np.unique(labels, return_counts=True)
    drop = ids[(areas < min_size) & (ids > 0)]
    if max_diameter > 0:
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is not None and max(s.stop - s.start for s in sl) > max_diameter:
                drop = np.append(drop, i)
    if drop.size:
        labels[np.isin(labels, drop)] = 0
    relabelled, _, _ = relabel_sequential(labels)
    return relabelled.astype(np.int32)
