"""Zernike moments of many nuclei at once, equal to mahotas' ``zernike_moments``.

Definition (Teague 1980, as ``mahotas.features.zernike_moments(mask, radius, degree,
cm=centroid)`` computes it on a nucleus's binary mask): for ``n = 0 .. degree`` and
``m = 0 .. n`` with ``n - m`` even, ``|Z_nm|`` with

    Z_nm = (n + 1) / pi * mean over the nucleus's pixels of R_nm(rho) exp(i m theta),

``rho, theta`` the polar coordinates of a pixel centre about the nucleus's centroid in units of
the disc's radius (x along columns, y along rows) and ``R_nm`` Zernike's radial polynomial. The
disc is centred on the centroid (mahotas' default centre) with radius the largest distance from
the centroid to a pixel centre of the nucleus: the least such disc that leaves no pixel out
(mahotas ignores pixels outside the disc). CellProfiler (centrosome) centres the disc on the
minimum enclosing circle instead and divides by the disc's area rather than by ``(n + 1) / pi``
times the pixel count, so its values differ from these.

Why hand-written: mahotas takes ~0.25 ms per nucleus (one call per nucleus on its cropped mask,
one C loop per moment): ~0.5 s for the 2,000 nuclei of ``benchmarks/features.py``, which alone
would take the ``--features full`` set below its target of 2,000 nuclei/s on one core; this
takes ~0.03 s for all of them, at degree 9 (CellProfiler's), so no lower degree is needed.

How: ``rho**(n - 2s) exp(i m theta) = (x**2 + y**2)**((n - 2s - m) / 2) (x + i y)**m``, so
``Z_nm`` is a fixed complex combination of the moments ``sum x**p y**q`` with
``p + q <= degree``. Along one row of a nucleus ``y`` is fixed, so only ``sum x**p`` goes over
pixels (``np.add.reduceat`` over each row's run), the rest over rows. All coordinates are
relative to the nucleus's first pixel and every sum runs over its pixels in raster order, so a
nucleus gets bit-identical moments in every window that holds it.
"""

from __future__ import annotations

from functools import cache
from math import comb, factorial

import numpy as np

#: Highest order, as CellProfiler's MeasureObjectSizeShape (30 moments).
DEGREE = 9


def zernike_indices(degree: int = DEGREE) -> tuple[tuple[int, int], ...]:
    """``(n, m)`` of the moments through ``degree``, in mahotas' order."""
    return tuple((n, m) for n in range(degree + 1) for m in range(n + 1) if (n - m) % 2 == 0)


@cache
def _coefficients(degree: int) -> tuple[tuple[int, tuple[tuple[int, int, int, int], ...]], ...]:
    """Per moment, ``n`` and the terms ``(p, q, real, imag)`` of ``R_nm(rho) exp(i m theta)``
    as the sum of ``(real + i imag) x**p y**q`` (exact integers)."""
    i_power = ((1, 0), (0, 1), (-1, 0), (0, -1))  # i**j
    out = []
    for n, m in zernike_indices(degree):
        terms: dict[tuple[int, int], list[int]] = {}
        for s in range((n - m) // 2 + 1):
            radial = (-1) ** s * factorial(n - s)
            radial //= factorial(s) * factorial((n + m) // 2 - s) * factorial((n - m) // 2 - s)
            k = (n - 2 * s - m) // 2  # (x**2 + y**2)**k (x + i y)**m
            for a in range(k + 1):
                for b in range(m + 1):
                    re, im = i_power[(m - b) % 4]
                    c = radial * comb(k, a) * comb(m, b)
                    t = terms.setdefault((2 * a + b, 2 * (k - a) + m - b), [0, 0])
                    t[0] += c * re
                    t[1] += c * im
        out.append((n, tuple((p, q, re, im) for (p, q), (re, im) in sorted(terms.items()))))
    return tuple(out)


def zernike_moments(
    rows: np.ndarray, cols: np.ndarray, owner: np.ndarray, n: int, degree: int = DEGREE
) -> np.ndarray:
    """``|Z_nm|`` of each nucleus ``0 .. n - 1``, shape ``(n, len(zernike_indices(degree)))``.

    ``rows``, ``cols``, ``owner``: int64 pixel coordinates and nucleus of every pixel, sorted
    by (owner, row, col); every nucleus has at least one pixel.
    """
    new_run = np.ones(rows.size, dtype=bool)
    new_run[1:] = (owner[1:] != owner[:-1]) | (rows[1:] != rows[:-1])
    runs = np.flatnonzero(new_run)  # one run per (nucleus, row)
    run_owner = owner[runs]
    starts = np.flatnonzero(np.diff(owner, prepend=-1))  # each nucleus's first pixel
    run_starts = np.flatnonzero(np.diff(run_owner, prepend=-1))  # and its first run
    count = np.diff(np.append(starts, rows.size)).astype(np.float64)
    rel_r = (rows - rows[starts][owner]).astype(np.float64)
    rel_c = (cols - cols[starts][owner]).astype(np.float64)
    cy = np.add.reduceat(rel_r, starts) / count
    cx = np.add.reduceat(rel_c, starts) / count
    dx = rel_c - cx[owner]
    dy = rel_r[runs] - cy[run_owner]
    ends = np.append(runs[1:], rows.size) - 1  # the farthest pixel of a row is at one end
    far = np.maximum(dx[runs] ** 2, dx[ends] ** 2) + dy**2
    radius = np.sqrt(np.maximum.reduceat(far, run_starts))
    radius[radius == 0] = 1.0  # a single pixel: only the constant terms count
    x = dx / radius[owner]
    y = dy / radius[run_owner]
    # sums of x**p over each run, then of x**p y**q over each nucleus's runs
    x_runs, xp = [np.diff(np.append(runs, rows.size)).astype(np.float64)], x
    for _ in range(degree):
        x_runs.append(np.add.reduceat(xp, runs))
        xp = xp * x
    moments: dict[tuple[int, int], np.ndarray] = {}
    yq = np.ones_like(y)
    for q in range(degree + 1):
        for p in range(degree + 1 - q):
            moments[p, q] = np.add.reduceat(x_runs[p] * yq, run_starts)
        yq = yq * y
    out = np.empty((n, len(zernike_indices(degree))))
    for k, (order, terms) in enumerate(_coefficients(degree)):
        re, im = np.zeros(n), np.zeros(n)
        for p, q, c_re, c_im in terms:
            if c_re:
                re += c_re * moments[p, q]
            if c_im:
                im += c_im * moments[p, q]
        out[:, k] = (order + 1) / np.pi * np.hypot(re, im) / count
    return out
