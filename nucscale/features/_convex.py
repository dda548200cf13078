"""Convex hulls of many nuclei at once: areas equal to scikit-image's ``convex_hull_image``,
and Feret diameters.

``regionprops`` computes ``area_convex`` with one Qhull call per nucleus on the corners of its
pixels (each pixel centre +- 0.5 along each axis: ``offset_coordinates``), then counts the
pixel centres inside or on that polygon (``grid_points_in_poly``, borders included). That is
~0.3 ms of Python per nucleus, two thirds of all of :func:`~nucscale.features.measure`; this
module gives the same counts for all nuclei of a window with a few hundred numpy passes, ~12x
faster (0.05 s instead of 0.6 s for 2,000 nuclei), which is why it is hand-written.

How, exactly and in integers (coordinates doubled, so every vertex is an integer):

- the hull of a nucleus's pixel diamonds is the hull of, per occupied row ``r``, the diamonds of
  its leftmost and rightmost pixels ``L`` and ``R``; its left boundary ``x = left(y)`` is the
  lower convex chain of the points ``(2r - 1, 2L), (2r, 2L - 1), (2r + 1, 2L)`` (x as a
  function of y), its right boundary the upper chain of the same points of ``R``;
- the chains of all nuclei are built together by Andrew's monotone chain run in lock step:
  step ``i`` pushes every nucleus's ``i``-th point, popping while the turn is not convex;
- a pixel centre ``(r, c)`` is in the hull when ``left(2r) <= 2c <= right(2r)``; with the
  chain segment ``(y0, x0) -> (y1, x1)`` holding ``y = 2r``, ``left(2r) = N / D`` with
  ``N = x0 (y1 - y0) + (2r - y0)(x1 - x0)`` and ``D = y1 - y0 > 0``, so the count per row,
  ``floor(right / 2) - ceil(left / 2) + 1``, is integer floor division: no rounding, points on
  the hull's edge included, as in scikit-image.

:func:`feret_diameters` measures the same hull (the one whose pixel count is ``convex_area``):
its vertices are midpoints of pixel edges, so a one-pixel nucleus is a diamond with Feret
diameters 1 (max) and 0.71 (min), and a ``h x w`` rectangle (``h <= w``) has min ``h`` and max
``hypot(w, h - 1)``. scikit-image's ``feret_diameter_max`` measures the marching-squares
contour of ``image_convex``, i.e. this hull's pixel centres re-rasterised, whose own diamonds
reach a little further: fed that image, :func:`feret_diameters` gives its value exactly (tested);
on the nucleus itself ours is never larger and 0.17 px smaller on average (at most 0.84 px, on
3,291 DSB 2018 nuclei). The hull is built by the same lock-step chains (a row's bottom point and
the next row's top point share a y and only the outer one can be a vertex, so each side has two
points per row, not three) and walked round as a polygon; every pair of its vertices is tried.
For 2,000 nuclei that is ~0.03 s; ``regionprops_table``'s ``feret_diameter_max`` takes ~1 s
(hull image, contour and all distances per nucleus), an earlier vectorised candidate search
0.63 s.
"""

from __future__ import annotations

import numpy as np


def convex_areas(rows: np.ndarray, cols: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of the convex hull of each nucleus ``0 .. n - 1``.

    ``rows``, ``cols``, ``owner``: int64 pixel coordinates and nucleus of every pixel, sorted
    by (owner, row, col); every nucleus has at least one pixel.
    """
    new = np.ones(rows.size, dtype=bool)
    new[1:] = (owner[1:] != owner[:-1]) | (rows[1:] != rows[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], rows.size) - 1
    row, left, right = rows[first], cols[first], cols[last]
    counts = 3 * np.bincount(owner[first], minlength=n)
    starts = np.cumsum(counts) - counts
    ys = np.stack([2 * row - 1, 2 * row, 2 * row + 1], axis=1).ravel()
    xs_left = np.stack([2 * left, 2 * left - 1, 2 * left], axis=1).ravel()
    xs_right = np.stack([2 * right, 2 * right + 1, 2 * right], axis=1).ravel()
    # sum over rows of floor(right / 2) + 1 - ceil(left / 2); the right chain as the lower
    # chain of -x, so both are floor divisions of the same form
    total = _chain_sum(ys, xs_left, starts, counts) + _chain_sum(ys, -xs_right, starts, counts)
    group_first = np.flatnonzero(np.diff(owner[first], prepend=-1))  # first row of each nucleus
    group_last = np.append(group_first[1:], first.size) - 1
    return total + row[group_last] - row[group_first] + 1  # the "+ 1" of every row's count


def _chain_sum(
    ys: np.ndarray, xs: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Per group, the sum over even ``y`` in its span of ``floor(-chain(y) / 2)``, where
    ``chain`` is the lower convex chain (least x) of the group's points."""
    n = counts.size
    cy, cx, length = _lower_chains(ys, xs, starts, counts)
    group = np.repeat(np.arange(n), counts)
    local = np.arange(ys.size) - starts[group]
    seg = np.flatnonzero(local < length[group] - 1)  # chain segments (vertex k -> k + 1)
    y0, y1, x0, x1 = cy[seg], cy[seg + 1], cx[seg], cx[seg + 1]
    first_even = y0 + (y0 & 1)
    m = np.maximum((y1 - first_even + 1) // 2, 0)  # even y in [y0, y1): each row once
    rep = np.repeat(np.arange(seg.size), m)
    offset = np.cumsum(m) - m
    y = first_even[rep] + 2 * (np.arange(rep.size) - offset[rep])
    d = (y1 - y0)[rep]
    num = x0[rep] * d + (y - y0[rep]) * (x1 - x0)[rep]
    values = (-num) // (2 * d)
    return np.bincount(group[seg][rep], weights=values, minlength=n).astype(np.int64)


def _lower_chains(
    ys: np.ndarray, xs: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower convex chain (least x as a function of y) of each group of points, all groups in
    lock step. Group ``j`` is ``ys/xs[starts[j] : starts[j] + counts[j]]``, sorted by y; its
    chain is written over the same slots, ``length[j]`` vertices long."""
    n = counts.size
    order = np.argsort(-counts, kind="stable")  # longest first: the active groups are a prefix
    base, neg_count = starts[order], -counts[order]
    cy, cx = np.empty_like(ys), np.empty_like(xs)
    top = np.zeros(n, dtype=np.int64)
    for i in range(int(-neg_count[0]) if n else 0):
        k = int(np.searchsorted(neg_count, -i, side="left"))  # groups with more than i points
        g, t = base[:k], top[:k]  # t is a view: popping and pushing update ``top``
        py, px = ys[g + i], xs[g + i]
        while True:
            cand = np.flatnonzero(t >= 2)
            if cand.size == 0:
                break
            at = g[cand] + t[cand]
            oy, ox, ay, ax = cy[at - 2], cx[at - 2], cy[at - 1], cx[at - 1]
            pop = (ay - oy) * (px[cand] - ox) - (ax - ox) * (py[cand] - oy) <= 0
            if not pop.any():
                break
            t[cand[pop]] -= 1
        cy[g + t], cx[g + t] = py, px
        t += 1
    length = np.empty(n, dtype=np.int64)
    length[order] = top
    return cy, cx, length


def feret_diameters(
    rows: np.ndarray, cols: np.ndarray, owner: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum Feret diameter (px) of each nucleus (inputs as :func:`convex_areas`),
    of the convex hull of its pixel diamonds (the hull whose pixel count is ``convex_area``).

    The maximum is the hull's largest vertex-to-vertex distance, the minimum its least width:
    over the hull's edges, the largest distance of a vertex from the edge's line (a narrowest
    pair of parallel calipers always has one jaw flush with a hull edge). All pairs of a
    nucleus's hull vertices are tried (~12 vertices for a typical nucleus), in exact integer
    arithmetic up to the final square root and division.
    """
    vy, vx, sizes = _diamond_hulls(rows, cols, owner, n)
    first = np.cumsum(sizes) - sizes
    vertex_owner = np.repeat(np.arange(n), sizes)
    nxt = np.arange(vy.size) + 1
    nxt[first + sizes - 1] = first  # the closing edge
    ey, ex = vy[nxt] - vy, vx[nxt] - vx
    # every (edge start, vertex) pair of each nucleus, grouped by edge start
    partners = sizes[vertex_owner]
    pair_start = np.cumsum(partners) - partners
    other = np.arange(int(partners.sum())) + np.repeat(first[vertex_owner] - pair_start, partners)
    dy, dx = vy[other] - np.repeat(vy, partners), vx[other] - np.repeat(vx, partners)
    diameter = np.sqrt(np.maximum.reduceat(dy * dy + dx * dx, pair_start[first]).astype(float))
    # |edge| times the distance of the vertex from the edge's line
    height = np.abs(np.repeat(ey, partners) * dx - np.repeat(ex, partners) * dy)
    length = np.sqrt((ey * ey + ex * ex).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        widths = np.maximum.reduceat(height, pair_start) / length
    widths[length == 0] = np.inf  # a top or bottom row of one pixel: its point twice
    return np.minimum.reduceat(widths, first) / 2, diameter / 2


def _diamond_hulls(
    rows: np.ndarray, cols: np.ndarray, owner: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices ``(y, x)`` (doubled coordinates) of the convex hull of each nucleus's pixel
    diamonds, nucleus after nucleus, in order round each, and the vertex count of each."""
    new = np.ones(rows.size, dtype=bool)
    new[1:] = (owner[1:] != owner[:-1]) | (rows[1:] != rows[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], rows.size) - 1
    row, left, right = rows[first], cols[first], cols[last]
    # the diamonds' points as in convex_areas; a row's bottom point and the next row's top
    # point share a y: only the outer x can be on the hull, so keep that one
    group = np.repeat(owner[first], 3)
    y = np.stack([2 * row - 1, 2 * row, 2 * row + 1], axis=1).ravel()
    x_left = np.stack([2 * left, 2 * left - 1, 2 * left], axis=1).ravel()
    x_right = np.stack([2 * right, 2 * right + 1, 2 * right], axis=1).ravel()
    new = np.ones(y.size, dtype=bool)
    new[1:] = (group[1:] != group[:-1]) | (y[1:] != y[:-1])
    at = np.flatnonzero(new)
    group, ys = group[at], y[at]
    xs_left, xs_right = np.minimum.reduceat(x_left, at), np.maximum.reduceat(x_right, at)
    counts = np.bincount(group, minlength=n)
    starts = np.cumsum(counts) - counts
    ly, lx, left_len = _lower_chains(ys, xs_left, starts, counts)
    ry, rx, right_len = _lower_chains(ys, -xs_right, starts, counts)
    sizes = left_len + right_len
    begin = np.cumsum(sizes) - sizes
    vy = np.empty(int(sizes.sum()), dtype=np.int64)
    vx = np.empty_like(vy)
    for length, cy, cx, backwards in ((left_len, ly, lx, False), (right_len, ry, -rx, True)):
        g = np.repeat(np.arange(n), length)
        k = np.arange(g.size) - (np.cumsum(length) - length)[g]
        # down the left chain, then up the right one
        dest = begin[g] + (sizes[g] - 1 - k if backwards else k)
        vy[dest], vx[dest] = cy[starts[g] + k], cx[starts[g] + k]
    return vy, vx, sizes
