"""U-Net maps -> nucleus instances: marker-controlled watershed, deterministic.

1. foreground mask: ``fg >= fg_threshold``;
2. markers: connected components (4-connectivity) of foreground minus boundary
   (``boundary >= boundary_threshold``), markers smaller than ``min_marker`` px (default
   ``min_area // 4``) ignored, so chromatin texture inside a large nucleus does not split it;
3. watershed of the boundary map from the markers, restricted to the foreground mask (pixels
   flow to the marker they reach through the lowest boundary values);
4. foreground components no marker reached (thin nuclei whose interior is all boundary)
   become instances of their own;
5. instances under ``min_area`` px or with a bounding box side over ``max_diameter`` dropped,
   then relabelled 1..n in raster order of their first pixel.

Every step is a pure function of the maps; ties in the watershed are broken by
scikit-image's stable priority queue, so the output is identical on every run.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from nucscale.infer._segmenter import Segmentation

_FOUR = ndi.generate_binary_structure(2, 1)


def _relabel(labels: np.ndarray, min_area: int, max_diameter: int) -> np.ndarray:
    """Drop small / too-large instances; renumber 1..n in raster order of first pixel."""
    flat = labels.ravel()
    ids, first, counts = np.unique(flat, return_index=True, return_counts=True)
    keep = (ids > 0) & (counts >= min_area)
    if max_diameter > 0 and keep.any():
        for sl_i, sl in enumerate(ndi.find_objects(labels)):
            if sl is None:
                continue
            lab = sl_i + 1
            big = (sl[0].stop - sl[0].start) > max_diameter or (
                sl[1].stop - sl[1].start
            ) > max_diameter
            if big:
                keep[np.searchsorted(ids, lab)] = False
    kept = ids[keep][np.argsort(first[keep], kind="stable")]
    lut = np.zeros(int(ids.max()) + 1 if ids.size else 1, np.int32)
    lut[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[labels]


def unet_instances(
    fg: np.ndarray,
    boundary: np.ndarray,
    *,
    fg_threshold: float = 0.5,
    boundary_threshold: float = 0.5,
    min_area: int = 10,
    max_diameter: int = 0,
    min_marker: int | None = None,
) -> Segmentation:
    """Instances from foreground and boundary probability maps.

    Parameters
    ----------
    fg, boundary:
        (h, w) probabilities in [0, 1].
    fg_threshold, boundary_threshold:
        Cut-offs of the two maps.
    min_area:
        Smallest instance kept, px.
    max_diameter:
        Instances with a bounding-box side longer than this are dropped (0: keep all).
    min_marker:
        Smallest marker (seed) kept, px; ``None``: ``min_area // 4``.

    Returns
    -------
    Segmentation
        Labels 1..n (int32), every type 1 ("nucleus") with probability = mean foreground.
    """
    fg = np.asarray(fg, np.float32)
    boundary = np.asarray(boundary, np.float32)
    mask = fg >= fg_threshold
    seeds = mask & (boundary < boundary_threshold)
    markers, n = ndi.label(seeds, structure=_FOUR)
    if n:
        sizes = np.bincount(markers.ravel(), minlength=n + 1)
        small = sizes < max(1, min_area // 4 if min_marker is None else min_marker)
        small[0] = False
        markers[small[markers]] = 0
    labels = watershed(boundary, markers, mask=mask, connectivity=1).astype(np.int32)
    orphan, n_orphan = ndi.label(mask & (labels == 0), structure=_FOUR)
    if n_orphan:
        base = int(labels.max())
        labels[orphan > 0] = orphan[orphan > 0] + base
    labels = _relabel(labels, min_area, max_diameter)
    n_out = int(labels.max())
    if n_out:
        probs = ndi.mean(fg, labels, index=np.arange(1, n_out + 1)).astype(np.float32)
    else:
        probs = np.zeros(0, np.float32)
    return Segmentation(labels, np.ones(n_out, np.int16), probs)
