"""Feret diameters and Zernike moments (``--features full``) against per-nucleus references on
real DSB 2018 H&E nuclei: Qhull and brute force over fine angles, scikit-image's
``feret_diameter_max``, mahotas' ``zernike_moments``; and known shapes."""

from __future__ import annotations

import math

import mahotas
import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from skimage.draw import disk
from skimage.measure import regionprops

from nucscale.features._cellprofiler import ZERNIKE, shape_family
from nucscale.features._convex import feret_diameters
from nucscale.features._zernike import DEGREE, zernike_indices

STEP = math.radians(0.01)  # the brute-force minimum's angle step
ANGLES = np.arange(0.0, math.pi, STEP)


def _shape(labels: np.ndarray, ids: np.ndarray, mpp: float = 1.0) -> dict[str, np.ndarray]:
    ones = np.ones(len(ids))
    return shape_family(labels, ids, ones, ones, mpp=mpp)


def _diamond_hull(mask: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull (Qhull) of the midpoints of all the mask's pixel edges."""
    rr, cc = np.nonzero(mask)
    points = np.concatenate(
        [
            np.column_stack([rr + dr, cc + dc])
            for dr, dc in ((-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5))
        ]
    )
    return points[ConvexHull(points).vertices]


def test_feret_equals_brute_force(he_nuclei: list) -> None:
    """Max: the largest distance between Qhull's hull vertices; min: the narrowest projection
    over directions 0.01 degrees apart, which can exceed the true minimum by at most
    diameter * step / 2 (a width changes no faster than the diameter per radian)."""
    compared = 0
    for labels, _, ids in he_nuclei:
        got = _shape(labels, ids)
        boxes = ndi.find_objects(labels)
        for row, i in enumerate(ids):
            hull = _diamond_hull(labels[boxes[i - 1]] == i)
            diameter = pdist(hull).max()
            assert got["feret_max_um"][row] == pytest.approx(diameter, abs=1e-9)
            proj = hull @ np.stack([np.cos(ANGLES), np.sin(ANGLES)])
            brute_min = (proj.max(axis=0) - proj.min(axis=0)).min()
            gap = brute_min - got["feret_min_um"][row]
            assert -1e-9 <= gap <= diameter * STEP / 2 + 1e-9, (i, gap)
            compared += 1
    assert compared == sum(len(ids) for _, _, ids in he_nuclei) > 500


def test_feret_max_against_scikit_image(he_nuclei: list) -> None:
    """scikit-image measures the contour of the convex-hull image (the pixel centres inside
    our hull, re-rasterised): on that image we give its value exactly; on the nucleus itself
    ours is never larger and less than a pixel smaller."""
    short = []
    for labels, _, ids in he_nuclei:
        got = _shape(labels, ids)["feret_max_um"]
        for row, p in enumerate(regionprops(labels)):
            assert p.label == ids[row]
            rr, cc = np.nonzero(p.image_convex)  # raster order: sorted by (row, col)
            on_hull = feret_diameters(rr, cc, np.zeros(rr.size, np.int64), 1)[1][0]
            assert on_hull == pytest.approx(p.feret_diameter_max, abs=1e-9)
            short.append(p.feret_diameter_max - got[row])
    assert min(short) >= -1e-9 and max(short) < 1.0


def test_feret_of_known_shapes() -> None:
    labels = np.zeros((120, 200), np.int64)
    labels[disk((55, 55), 40)] = 1  # diameter 80
    labels[10:22, 120:150] = 2  # 12 x 30
    labels[40:100, 170:177] = 3  # 60 x 7
    labels[110, 110] = 4  # one pixel: a diamond of diagonals 1
    got = _shape(labels, np.array([1, 2, 3, 4]))
    assert abs(got["feret_min_um"][0] - 80) <= 1 and abs(got["feret_max_um"][0] - 80) <= 1
    np.testing.assert_allclose(got["feret_min_um"][1:], [12, 7, math.sqrt(0.5)], rtol=1e-12)
    # a rectangle's diamonds reach the middle of its sides' end pixels, not the corners
    np.testing.assert_allclose(
        got["feret_max_um"][1:], [math.hypot(30, 11), math.hypot(60, 6), 1.0], rtol=1e-12
    )
    halved = _shape(labels, np.array([1, 2, 3, 4]), mpp=0.5)
    np.testing.assert_allclose(halved["feret_max_um"], got["feret_max_um"] / 2)
    np.testing.assert_allclose(halved["feret_min_um"], got["feret_min_um"] / 2)


def test_zernike_equals_mahotas(he_nuclei: list) -> None:
    """mahotas.features.zernike_moments(mask, radius, 9, cm=centroid), radius the largest
    centroid-to-pixel distance (grown by 1e-12 so that mahotas' own rounding cannot drop the
    farthest pixel, which lies exactly on the circle)."""
    compared = 0
    for labels, _, ids in he_nuclei:
        shape = _shape(labels, ids)
        got = np.column_stack([shape[name] for name in ZERNIKE])
        boxes = ndi.find_objects(labels)
        for row, i in enumerate(ids):
            mask = (labels[boxes[i - 1]] == i).astype(np.uint8)
            rr, cc = np.nonzero(mask)
            cm = (rr.mean(), cc.mean())
            radius = math.sqrt(((rr - cm[0]) ** 2 + (cc - cm[1]) ** 2).max()) or 1.0
            want = mahotas.features.zernike_moments(mask, radius * (1 + 1e-12), DEGREE, cm=cm)
            np.testing.assert_allclose(got[row], want, rtol=1e-9, atol=1e-10)
            compared += 1
    assert compared > 500
    assert len(ZERNIKE) == 30 and ZERNIKE[-1] == "zernike_9_9"


def test_zernike_facts(he_nuclei: list) -> None:
    labels, _, ids = he_nuclei[0]
    got = _shape(labels, ids)
    np.testing.assert_allclose(got["zernike_0_0"], 1 / math.pi)  # the mean of R_00 = 1
    assert np.abs(got["zernike_1_1"]).max() < 1e-12  # the disc is centred on the centroid
    # magnitudes do not change when the image is turned or mirrored
    for moved in (np.rot90(labels), labels.T, labels[::-1]):
        other = _shape(np.ascontiguousarray(moved), ids)
        for name in ZERNIKE:
            np.testing.assert_allclose(other[name], got[name], rtol=1e-9, atol=1e-12)
    # a disc is orthogonal to every polynomial but R_00: all else is pixelation
    disc = np.zeros((101, 101), np.int64)
    disc[disk((50, 50), 40)] = 1
    one = _shape(disc, np.array([1]))
    assert max(one[name][0] for name in ZERNIKE[1:]) < 0.02
    # an elongated shape is not: |Z_22| measures its elongation
    bar = np.zeros((60, 60), np.int64)
    bar[25:35, 5:55] = 1
    assert _shape(bar, np.array([1]))["zernike_2_2"][0] > 0.2
    assert zernike_indices(2) == ((0, 0), (1, 1), (2, 0), (2, 2))


def test_same_values_wherever_the_window_starts(he_nuclei: list) -> None:
    labels, _, ids = he_nuclei[1]
    got = _shape(labels, ids, mpp=0.25)
    shifted = _shape(np.pad(labels, ((37, 0), (5, 11))), ids, mpp=0.25)
    for name in ("feret_min_um", "feret_max_um", *ZERNIKE):
        np.testing.assert_array_equal(shifted[name], got[name], err_msg=name)
