"""Nucleus outlines as WKB polygons in level-0 pixel coordinates (the GeoParquet column).

Coordinates are continuous, with pixel edges at integers: level-0 pixel (x, y) is the square
[x, x + 1) x [y, y + 1), as in QuPath, GeoJSON viewers and GDAL (the ``bbox_*`` columns use the
same frame; the ``centroid_*`` columns are pixel indices, so a polygon's centroid is about
``centroid + 0.5``).

The outline of a nucleus is scikit-image's marching-squares contour at level 0.5 of its mask
with holes filled: it runs through the midpoints between inside and outside pixel centres, so
it cuts pixel corners (a lone pixel becomes a diamond of area 0.5). A nucleus of several
8-connected pieces (rare: post-processing keeps instances connected) is outlined by its
longest contour. Vertices in the middle of a straight run are dropped (exactly collinear
points only, so the polygon is unchanged).

Exact at tile borders: each contour is computed in coordinates local to the nucleus's
bounding box and moved by the (integer) global position of that box, so the same nucleus gives
bit-identical coordinates in every tile window that holds it.
"""

from __future__ import annotations

import numpy as np
import shapely
from scipy import ndimage as ndi
from skimage.measure import find_contours

_FILL_STRUCTURE = np.ones((3, 3), dtype=bool)


def outline_wkb(
    labels: np.ndarray,
    ids: np.ndarray,
    box: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    holes: np.ndarray | None = None,
    scale: float = 1.0,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """WKB polygon (bytes, object array) of each nucleus ``ids[i]``, in level-0 pixels.

    ``box`` is (row0, col0, row1, col1) of each nucleus in the window, half-open; ``origin``
    is the window's top-left analysis pixel in the slide and ``scale`` the level-0 pixels per
    analysis pixel. ``holes`` (bool per nucleus), when known, says which masks need their
    holes filled; by default all are filled.
    """
    row0, col0, row1, col1 = box
    if ids.size == 0:
        return np.empty(0, dtype=object)
    fill = np.ones(ids.size, dtype=bool) if holes is None else holes
    padded = np.zeros((int((row1 - row0).max()) + 2, int((col1 - col0).max()) + 2), np.uint8)
    rings = []
    for i, label in enumerate(ids.tolist()):
        h, w = int(row1[i] - row0[i]), int(col1[i] - col0[i])
        crop = labels[row0[i] : row1[i], col0[i] : col1[i]] == label
        if fill[i]:
            crop = ndi.binary_fill_holes(crop, _FILL_STRUCTURE)
        mask = padded[: h + 2, : w + 2]
        mask[1:-1, 1:-1] = crop
        contour = max(find_contours(mask, 0.5, fully_connected="high"), key=len)
        mask[1:-1, 1:-1] = 0
        # (row, col) indices in the padded crop -> (x, y) in the pixel-edge frame of the crop
        rings.append(contour[:-1, ::-1] - 0.5)  # the closing point is added back by shapely
    points, ring = _drop_collinear(rings)
    corner = np.stack([origin[0] + col0, origin[1] + row0], axis=1).astype(np.float64)
    coords = (points + corner[ring]) * scale  # integer corner: exact at tile borders
    polys = shapely.polygons(shapely.linearrings(coords, indices=ring))
    return np.asarray(shapely.to_wkb(shapely.orient_polygons(polys)), dtype=object)


def _drop_collinear(rings: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ring points without those in the middle of a straight run, and the ring
    index of each point kept (marching squares on a mask gives half-pixel steps, so the test
    for collinearity is exact)."""
    counts = np.array([len(r) for r in rings])
    points = np.concatenate(rings)
    ring = np.repeat(np.arange(counts.size), counts)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])[ring]
    pos = np.arange(points.shape[0]) - start
    n = counts[ring]
    prev = points[start + (pos - 1) % n]
    nxt = points[start + (pos + 1) % n]
    a, b = points - prev, nxt - points
    keep = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] != 0
    return points[keep], ring[keep]
