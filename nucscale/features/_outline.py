"""Nucleus outlines as WKB polygons in level-0 pixel coordinates (the GeoParquet column).

Coordinates are continuous, with pixel edges at integers: level-0 pixel (x, y) is the square
[x, x + 1) x [y, y + 1), as in QuPath, GeoJSON viewers and GDAL (the ``bbox_*`` columns use the
same frame; the ``centroid_*`` columns are pixel indices, so a polygon's centroid is about
``centroid + 0.5``).

The outline of a nucleus traces the edges of its pixels (as QuPath does for label images), so
its area is exactly the nucleus's pixel count with holes filled (exterior rings only). A
nucleus whose pixels form several 4-connected pieces (pieces touching only at a pixel corner
count as two: a ring through a corner twice would not be a valid polygon) is a MultiPolygon
of them; every other nucleus is a Polygon. Vertices only where the outline turns.

How (hand-written because per-nucleus contour tracing, e.g. ``skimage.measure.find_contours``,
costs ~0.25 ms of Python per nucleus, as much as all the other measures together): every
boundary edge of every measured pixel is one directed unit segment with the nucleus on its
left; each edge's successor is the edge of the same nucleus that starts where it ends (at a
corner shared by two diagonal pixels, the left turn); the rings are the cycles of that
permutation, found and ordered for all nuclei at once by pointer doubling (O(log perimeter)
numpy passes). A 1024 x 1024 window with 2,000 nuclei takes ~20 ms.

Exact at tile borders: rings start at their first boundary edge in raster order and all
arithmetic is on integer pixel corners before the final ``* scale``, so the same nucleus gives
bit-identical coordinates in every tile window that holds it.
"""

from __future__ import annotations

import numpy as np
import shapely

# directions of a boundary edge: 0 east (+x), 1 south (+y), 2 west (-x), 3 north (-y)
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


def outline_wkb(
    labels: np.ndarray,
    ids: np.ndarray,
    *,
    scale: float = 1.0,
    origin: tuple[int, int] = (0, 0),
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    padded: np.ndarray | None = None,
) -> np.ndarray:
    """WKB polygon (bytes, object array) of each nucleus ``ids[i]``, in level-0 pixels.

    ``origin`` is the window's top-left analysis pixel in the slide and ``scale`` the level-0
    pixels per analysis pixel. ``pixels`` = (rows, cols, i) of every pixel of a measured
    nucleus in raster order (``i`` its position in ``ids``), when the caller has it: the work is
    then proportional to the nuclei's pixels, not the window's; ``padded``, ``labels`` with a
    one-pixel border of 0, likewise saves a copy of the window.
    """
    n = int(ids.size)
    if n == 0:
        return np.empty(0, dtype=object)
    if pixels is None:
        rows, cols = np.nonzero(np.isin(labels, ids))
        order = np.argsort(ids)
        owner_of = order[np.searchsorted(ids[order], labels[rows, cols])]
        pixels = (rows, cols, owner_of)
    if padded is None:
        padded = np.pad(labels, 1)
    xs, ys, dirs, owner = _edges(padded, *pixels)
    ring_x, ring_y, ring_owner, ring_id = _rings(xs, ys, dirs, owner, labels.shape)
    coords, ring_index, piece_owner = _exteriors(ring_x, ring_y, ring_owner, ring_id, n)
    coords = (coords + np.array(origin, dtype=np.float64)) * scale
    pieces = shapely.orient_polygons(
        shapely.polygons(shapely.linearrings(coords, indices=ring_index))
    )
    if piece_owner.size == n:  # one piece each: Polygons
        return np.asarray(shapely.to_wkb(pieces), dtype=object)
    multi = shapely.multipolygons(pieces, indices=piece_owner)
    single = shapely.get_num_geometries(multi) == 1
    multi[single] = shapely.get_geometry(multi[single], 0)
    return np.asarray(shapely.to_wkb(multi), dtype=object)


def _edges(
    padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start corner (x, y in window pixel corners), direction and nucleus of every boundary
    edge of the given pixels, in raster order of their pixels, the nucleus on the edge's left
    (``padded``: the label window with a one-pixel border of 0)."""
    width = padded.shape[1] - 2
    own = padded[rows + 1, cols + 1]
    parts = []
    # (neighbour offset, start corner offset from the pixel's top-left, direction)
    for (dr, dc), (ox, oy), d in (
        ((-1, 0), (1, 0), 2),  # top edge, drawn westwards
        ((0, -1), (0, 0), 1),  # left edge, southwards
        ((1, 0), (0, 1), 0),  # bottom edge, eastwards
        ((0, 1), (1, 1), 3),  # right edge, northwards
    ):
        edge = padded[rows + 1 + dr, cols + 1 + dc] != own
        r, c = rows[edge], cols[edge]
        parts.append((r * width + c, c + ox, r + oy, np.full(r.size, d), index[edge]))
    raster = np.concatenate([q[0] for q in parts])
    order = np.argsort(raster, kind="stable")
    xs, ys, dirs, owner = (np.concatenate([q[i] for q in parts])[order] for i in range(1, 5))
    return xs, ys, dirs, owner


def _rings(
    xs: np.ndarray, ys: np.ndarray, dirs: np.ndarray, owner: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices of every ring, ring by ring in order (start corner of each edge), without the
    vertices where the ring goes straight on; with the nucleus and ring id of each vertex."""
    m = xs.size
    h, w = shape[0] + 3, shape[1] + 3
    start_key = (owner * w + xs) * h + ys
    ex, ey = xs + _STEP[dirs, 0], ys + _STEP[dirs, 1]
    end_key = (owner * w + ex) * h + ey
    by_start = np.argsort(start_key, kind="stable")
    sorted_keys = start_key[by_start]
    first = np.searchsorted(sorted_keys, end_key)
    succ = by_start[first]
    # two edges of the nucleus leave a corner shared by two diagonal pixels: take the left turn
    second = np.minimum(first + 1, m - 1)
    twin = (second != first) & (sorted_keys[second] == end_key)
    left = (dirs + 3) % 4
    use_second = twin & (dirs[succ] != left)
    succ = np.where(use_second, by_start[second], succ)
    # ring id: the smallest edge index in the cycle (pointer doubling)
    ring = np.arange(m)
    jump = succ.copy()
    span = 1
    while span < m:
        ring = np.minimum(ring, ring[jump])
        jump = jump[jump]
        span *= 2
        if np.array_equal(ring, ring[succ]):
            break
    # position in the ring: distance to its last edge, with the cycle cut before its head
    nxt = np.where(succ == ring, np.arange(m), succ)
    dist = (nxt != np.arange(m)).astype(np.int64)
    while True:
        step = dist[nxt]
        if not step.any():
            break
        dist = dist + step
        nxt = nxt[nxt]
    order = np.lexsort((-dist, ring))
    xs, ys, dirs, owner, ring = xs[order], ys[order], dirs[order], owner[order], ring[order]
    # drop vertices between two edges of the same direction
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    lengths = np.diff(np.r_[starts, ring.size])
    prev = np.arange(ring.size) - 1
    prev[starts] = starts + lengths - 1
    keep = dirs != dirs[prev]
    return xs[keep], ys[keep], owner[keep], ring[keep]


def _exteriors(
    xs: np.ndarray, ys: np.ndarray, owner: np.ndarray, ring: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of every exterior ring (they run clockwise on screen: negative shoelace
    area here; holes run the other way and are dropped), each ring's index, and the nucleus
    of each ring, rings sorted by nucleus."""
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    ends = np.r_[starts[1:], ring.size]
    nxt = np.arange(ring.size) + 1
    nxt[ends - 1] = starts
    cross = xs * ys[nxt] - xs[nxt] * ys
    area = np.add.reduceat(cross, starts)  # twice the signed area, integer
    ring_owner = owner[starts]
    chosen = np.flatnonzero(area < 0)
    chosen = chosen[np.argsort(ring_owner[chosen], kind="stable")]
    if np.unique(ring_owner[chosen]).size != n:
        raise ValueError("some nuclei have no pixels in the window")
    lengths = (ends - starts)[chosen]
    first = np.repeat(starts[chosen] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    sel = first + np.arange(lengths.sum())
    ring_index = np.repeat(np.arange(chosen.size), lengths)
    coords = np.stack([xs[sel], ys[sel]], axis=1).astype(np.float64)
    return coords, ring_index, ring_owner[chosen]
