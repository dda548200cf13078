"""Which instances of a tile's window the tile owns (DESIGN.md invariant 2) and their ids.

A tile owns an instance when (a) the instance does not touch the window's edge — so it is complete —
where that edge lies inside the image (the image's own edge cuts nothing), and (b) its centroid,
computed on the complete instance in global analysis coordinates, lies in the tile's half-open core.
The centroid test is done in exact integer arithmetic (``count * x0 <= sum_x < count * x1``), so the
same nucleus seen from two windows gets the same verdict bit for bit, and exactly one core can
contain it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nucscale.tiling._grid import Box

#: Local indices within a tile occupy the low 20 bits of a nucleus id.
LOCAL_BITS = 20

#: Rows relabelled at once by :func:`owned_ranks` with ``out``.
_BAND = 256


def id_base(tile_index: int) -> int:
    """The high bits of the ids of a tile's nuclei: a nucleus id is ``id_base | (1 + rank)``."""
    return int(tile_index) << LOCAL_BITS


@dataclass(frozen=True)
class Owned:
    """The instances a tile owns, in a deterministic order.

    Attributes
    ----------
    labels:
        Instance values in the segmentation's label image, sorted by centroid (y, then x).
    nucleus_ids:
        ``id_base(tile_index) | (1 + rank)``; stable across reruns (invariant 3).
    """

    labels: np.ndarray
    nucleus_ids: np.ndarray


def edge_labels(
    labels: np.ndarray, window: Box | None = None, image: Box | None = None
) -> np.ndarray:
    """Label values on the border rows/columns of ``labels`` that cut the image: with
    ``window`` (what ``labels`` covers) and ``image``, sides at or beyond the image's own edge
    are left out; an instance touching one is complete."""
    sides = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    if window is not None and image is not None:
        cuts = [
            window.y0 > image.y0,
            window.y1 < image.y1,
            window.x0 > image.x0,
            window.x1 < image.x1,
        ]
        sides = [s for s, cut in zip(sides, cuts, strict=True) if cut]
    if not sides:
        return np.zeros(0, labels.dtype)
    border = np.concatenate(sides)
    return np.unique(border[border > 0])


def owned_instances(
    labels: np.ndarray,
    window: Box,
    core: Box,
    tile_index: int,
    image: Box | None = None,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Owned:
    """Instances of ``labels`` (covering ``window``) owned by the tile with ``core``.

    ``image``: the image's extent, when ``labels`` is 0 outside it; instances touching the
    window's edge where that edge is the image's are then owned as any other. ``keep``: a
    rule on the global centroids (x, y arrays) that an owned instance must also pass (the
    tissue mask's); it sees the same centroids from every window, so it is tile-independent.
    """
    n = int(labels.max(initial=0))
    if n == 0 or labels.size == 0:
        empty = np.zeros(0, np.int64)
        return Owned(empty, empty)
    if n >= 1 << LOCAL_BITS:
        raise ValueError(f"{n} instances in one tile exceed the id space (2**{LOCAL_BITS})")
    index = np.arange(1, n + 1)
    # pixel sums per label from the labelled pixels alone (exact: float64 sums of integer
    # coordinates stay far below 2**53), not from whole-window coordinate images
    ys, xs = np.nonzero(labels)
    values = labels[ys, xs]
    count = np.bincount(values, minlength=n + 1)[1:].astype(np.int64)
    sy = np.bincount(values, weights=ys, minlength=n + 1)[1:].astype(np.int64)
    sx = np.bincount(values, weights=xs, minlength=n + 1)[1:].astype(np.int64)
    sy += count * window.y0
    sx += count * window.x0
    inside = (
        (count > 0)
        & (count * core.x0 <= sx)
        & (sx < count * core.x1)
        & (count * core.y0 <= sy)
        & (sy < count * core.y1)
    )
    inside[edge_labels(labels, window, image) - 1] = False
    kept = index[inside]
    cy = sy[inside] / count[inside]
    cx = sx[inside] / count[inside]
    if keep is not None:
        rule = keep(cx, cy)
        kept, cx, cy = kept[rule], cx[rule], cy[rule]
    order = np.lexsort((cx, cy))
    kept = kept[order]
    ids = np.int64(id_base(tile_index)) | np.arange(1, kept.size + 1, dtype=np.int64)
    return Owned(kept.astype(np.int64), ids)


def owned_ranks(labels: np.ndarray, owned: Owned, out: np.ndarray | None = None) -> np.ndarray:
    """``labels`` with owned instances mapped to their rank (1 + index in ``owned``) and
    everything else 0: int32, or written into ``out`` (which may be ``labels`` itself) a band
    of rows at a time. Ranks keep a tile's window in 32 bits and its int64 ids to the parts
    kept (:func:`ids_of_ranks`): an int64 window of 2560² was 50 MiB of the instance stage's
    peak, a second window of labels 25 MiB."""
    top = int(labels.max(initial=0))
    dtype = np.int32 if out is None else out.dtype
    lut = np.zeros(top + 1, dtype)
    lut[owned.labels] = np.arange(1, owned.labels.size + 1, dtype=dtype)
    if out is None:
        return lut[labels]
    for y in range(0, labels.shape[0], _BAND):
        out[y : y + _BAND] = lut[labels[y : y + _BAND]]
    return out


def ids_of_ranks(ranks: np.ndarray, owned: Owned) -> np.ndarray:
    """Nucleus ids (int64) of an image of ranks from :func:`owned_ranks` (0 stays 0)."""
    lut = np.zeros(owned.nucleus_ids.size + 1, np.int64)
    lut[1:] = owned.nucleus_ids
    return lut[ranks]


def relabel_owned(labels: np.ndarray, owned: Owned) -> np.ndarray:
    """``labels`` with owned instances mapped to their nucleus ids and everything else 0."""
    return ids_of_ranks(owned_ranks(labels, owned), owned)
