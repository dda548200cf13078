"""Convex-hull areas of many nuclei at once, equal to scikit-image's ``convex_hull_image``.

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
