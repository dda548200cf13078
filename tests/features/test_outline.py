"""Nucleus outlines: WKB polygons in level-0 pixel-edge coordinates, exact under translation."""

from __future__ import annotations

import numpy as np
import shapely
from skimage.draw import ellipse
from skimage.measure import regionprops

from nucscale.features._outline import outline_wkb


def _outlines(labels: np.ndarray, **kw: object) -> np.ndarray:
    props = regionprops(labels)
    ids = np.array([p.label for p in props])
    return shapely.from_wkb(outline_wkb(labels, ids, **kw))  # type: ignore[arg-type]


def test_lone_pixel_is_its_square() -> None:
    labels = np.zeros((3, 4), np.int32)
    labels[1, 2] = 9
    (poly,) = _outlines(labels)
    assert poly.equals(shapely.box(2, 1, 3, 2))  # pixel (x 2, y 1) is [2, 3) x [1, 2)
    assert poly.area == 1


def test_rectangle_keeps_only_its_corners_and_orientation() -> None:
    labels = np.zeros((8, 8), np.int32)
    labels[2:6, 1:4] = 1  # rows 2..5, cols 1..3
    (poly,) = _outlines(labels)
    assert shapely.get_num_coordinates(poly) == 5  # 4 corners + closing point
    assert poly.area == 12
    assert shapely.bounds(poly).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert shapely.is_ccw(poly.exterior)
    assert poly.is_valid


def test_scale_and_origin_map_to_level0_and_translation_is_exact() -> None:
    rng = np.random.default_rng(3)
    labels = np.zeros((120, 140), np.int32)
    for k in range(1, 15):
        r, c = rng.integers(15, 105), rng.integers(15, 125)
        rr, cc = ellipse(
            r,
            c,
            rng.uniform(3, 9),
            rng.uniform(3, 9),
            rotation=rng.uniform(0, 3),
            shape=labels.shape,
        )
        labels[rr, cc] = k
    a = _outlines(labels, scale=1.0, origin=(0, 0))
    shifted = np.zeros((150, 170), np.int32)
    shifted[17:137, 29:169] = labels
    b = _outlines(shifted, scale=1.0, origin=(1000 - 29, 2000 - 17))
    moved = shapely.transform(a, lambda xy: xy + np.array([1000, 2000]))
    assert all(shapely.equals_exact(moved, b, tolerance=0))  # bit-identical after the shift
    c = _outlines(labels, scale=4.0, origin=(0, 0))
    np.testing.assert_array_equal(shapely.area(c), 16 * shapely.area(a))
    filled = np.array([p.area_filled for p in regionprops(labels)])
    np.testing.assert_array_equal(shapely.area(a), filled)  # exactly the pixels, holes filled
    assert shapely.is_valid(a).all()


def test_holes_are_filled() -> None:
    labels = np.zeros((9, 9), np.int32)
    labels[1:8, 1:8] = 4
    labels[4, 4] = 0
    (poly,) = _outlines(labels)
    assert len(poly.interiors) == 0
    assert poly.contains(shapely.Point(4.5, 4.5))
    assert poly.area == 49


def test_pieces_touching_at_a_corner_make_a_multipolygon() -> None:
    labels = np.zeros((6, 6), np.int32)
    labels[1, 1] = 3
    labels[2, 2:4] = 3  # touches (1, 1) only at a pixel corner
    (multi,) = _outlines(labels)
    assert multi.geom_type == "MultiPolygon" and multi.is_valid and multi.area == 3
    assert multi.equals(shapely.union(shapely.box(1, 1, 2, 2), shapely.box(2, 2, 4, 3)))


def test_neighbouring_nuclei_share_their_border() -> None:
    labels = np.zeros((5, 7), np.int32)
    labels[1:4, 1:3] = 1
    labels[1:4, 3:6] = 2
    a, b = _outlines(labels)
    assert a.intersection(b).length == 3  # the shared edge x = 3, y 1..4
    assert a.intersection(b).area == 0
