"""Per-nucleus position and morphology: the HoVer-Net measures, equal to scikit-image regionprops.

:func:`measure` is the one entry point: a label window in analysis pixels in, one array per
measured column of :data:`~nucscale.features._schema.NUCLEUS_SCHEMA` out.

scikit-image's ``regionprops_table`` is the reference, and the tests check equality with it on
synthetic and real (DSB 2018) labels. Calling it takes ~0.8 ms of Python per nucleus for the 15
HoVer-Net measures, mostly per region and per property. Here every measure is computed for all
nuclei of a window at once with numpy, on the nuclei's own pixels (the work grows with the
measured pixels, not with the window and its halo); holes are filled for all nuclei in one
call, their masks side by side on one canvas (:func:`_filled_area`):

- area, bbox, centroid, inertia tensor (and from it the axis lengths, eccentricity,
  orientation): exact integer moments per label (``np.add.reduceat`` over pixels sorted by label,
  in coordinates local to the bounding box);
- perimeter: scikit-image's 4-neighbourhood border-pixel weighting, from the neighbours of each
  measured pixel, with "same label" in place of "foreground" (regionprops looks at one label
  alone, so neighbouring labels count as background there too);
- euler_number: scikit-image's 2 x 2 bit-quad counting (8-connectivity), each counted quad
  anchored at one pixel of its label;
- convex area: exact integer hull counting for all nuclei at once,
  :mod:`nucscale.features._convex` (12x faster than one Qhull call per nucleus).

``benchmarks/features.py`` measures it (2,000 nuclei in a 1024 x 1024 window, one core):
:func:`morphology` 10.7x ``regionprops_table`` with the same 15 measures, :func:`measure` with
all columns 5.2x. Remaining differences to regionprops are float rounding (relative ~1e-12;
the minor axis of a one-pixel-wide line is 0 here and ~1e-8 there),
and ``orientation`` of regions whose covariance is exactly zero and whose column variance
exceeds the row variance: the angle is pi/2 here, while regionprops returns +pi/2 or -pi/2
depending on the sign of rounding noise in its moments (the same axis; orientation is defined
modulo pi, and the tests compare it so).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage as ndi

from nucscale.features._convex import convex_areas
from nucscale.features._intensity import intensity
from nucscale.features._outline import outline_wkb
from nucscale.features._schema import COLUMNS, MORPHOLOGY, NUCLEUS_SCHEMA

log = logging.getLogger(__name__)

#: Columns :func:`measure` returns: all but the identity and class columns, in schema order.
MEASURED_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in COLUMNS
    if c not in {"nucleus_id", "tile_row", "tile_col", "type", "type_name", "type_prob"}
)

_DTYPES = {name: np.dtype(NUCLEUS_SCHEMA.field(name).type.to_pandas_dtype()) for name in COLUMNS}
_UNIT_POWER = {"area": 2, "length": 1, "none": 0}
_FILL_STRUCTURE = np.ones((3, 3), dtype=bool)  # as regionprops' area_filled

# skimage.measure.perimeter(neighborhood=4): weight of a border pixel by its border neighbours.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + math.sqrt(2.0)) / 2.0
_NEIGHBOURS = [(dr, dc, 10 if dr and dc else 2) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
_NEIGHBOURS.remove((0, 0, 2))


def measure(
    labels: np.ndarray,
    rgb: np.ndarray,
    ids: np.ndarray,
    *,
    mpp: float,
    scale: float = 1.0,
    origin: tuple[int, int] = (0, 0),
) -> dict[str, np.ndarray]:
    """Position, morphology and intensity of the nuclei ``ids`` in a label window.

    Parameters
    ----------
    labels:
        (h, w) integer instance image in analysis pixels; 0 is background. Labels not in ``ids``
        are ignored (each nucleus is measured on its own mask, as regionprops does).
    rgb:
        (h, w, 3) uint8 image of the same window.
    ids:
        (n,) distinct non-zero label values to measure; each must occur in ``labels``.
    mpp:
        Analysis pixel size in µm.
    scale:
        Level-0 pixels per analysis pixel.
    origin:
        (x0, y0), the analysis-pixel position of the window's top-left pixel in the slide.

    Returns
    -------
    dict
        One array of length n per name in :data:`MEASURED_COLUMNS`, rows in the order of
        ``ids``, dtypes as in ``NUCLEUS_SCHEMA``. Conventions:

        - ``centroid_x/_y``: level-0 px, ``(origin + local centroid + 0.5) * scale - 0.5``, where
          the local centroid is the mean of the pixel indices (pixel-centre convention: a lone
          pixel in column c has centroid c). An analysis pixel i covers level-0 pixels
          [i * scale, (i + 1) * scale), whose centre is at (i + 0.5) * scale - 0.5, the same
          mapping the resampler uses; for ``scale == 1`` it is the identity.
        - ``centroid_x_um/_y_um``: ``centroid_level0 * mpp / scale`` (level-0 px times the
          level-0 pixel size).
        - ``bbox_x0..bbox_y1``: level-0 px, half-open, ``round((origin + bbox) * scale)``.
        - morphology: regionprops' measures with lengths times ``mpp`` and areas (inertia
          eigenvalues too) times ``mpp**2``; orientation in radians, euler_number unitless.
        - intensity: see :mod:`nucscale.features._intensity`.
        - ``geometry``: WKB outline, see :mod:`nucscale.features._outline`.

    Raises
    ------
    ValueError
        Shapes or dtypes do not fit, ``mpp`` or ``scale`` is not positive, or an id is zero,
        repeated or absent from ``labels``.
    """
    ids = _check(labels, rgb, ids, mpp=mpp, scale=scale)
    n = int(ids.shape[0])
    if n == 0:
        return {name: np.zeros(0, dtype=_DTYPES[name]) for name in MEASURED_COLUMNS}

    rows, cols, index = _pixels(labels, ids)
    padded = np.pad(labels, 1)  # neighbours of the window's edge pixels are background
    geo = _geometry(labels, padded, rows, cols, index, ids)

    x0, y0 = origin
    out: dict[str, np.ndarray] = {}
    cx = (x0 + geo["col0"]) + geo["centroid_dcol"]
    cy = (y0 + geo["row0"]) + geo["centroid_drow"]
    out["centroid_x"] = (cx + 0.5) * scale - 0.5
    out["centroid_y"] = (cy + 0.5) * scale - 0.5
    out["centroid_x_um"] = out["centroid_x"] * (mpp / scale)
    out["centroid_y_um"] = out["centroid_y"] * (mpp / scale)
    out["bbox_x0"] = np.rint((x0 + geo["col0"]) * scale)
    out["bbox_y0"] = np.rint((y0 + geo["row0"]) * scale)
    out["bbox_x1"] = np.rint((x0 + geo["col1"]) * scale)
    out["bbox_y1"] = np.rint((y0 + geo["row1"]) * scale)
    for name, kind in MORPHOLOGY.items():
        out[name] = geo[name] * mpp ** _UNIT_POWER[kind] if _UNIT_POWER[kind] else geo[name]
    out.update(intensity(rgb[rows, cols], index, n))
    out["geometry"] = outline_wkb(
        labels, ids, scale=scale, origin=origin, pixels=(rows, cols, index), padded=padded
    )
    return {
        name: np.asarray(out[name]).astype(_DTYPES[name], copy=False) for name in MEASURED_COLUMNS
    }


def morphology(labels: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The 15 measures of :data:`~nucscale.features.MORPHOLOGY` for the nuclei ``ids``, in
    pixel units, rows in the order of ``ids``.

    The same numbers as ``skimage.measure.regionprops_table`` (``area``, ``area_bbox``,
    ``area_convex``, ``area_filled``, ``perimeter``, ``equivalent_diameter_area``,
    ``axis_major_length``, ``axis_minor_length``, ``eccentricity``, ``orientation``, ``extent``,
    ``solidity``, ``euler_number``, ``inertia_tensor_eigvals``), see the module docstring;
    :func:`measure` gives them in µm with everything else.
    """
    ids = _check_ids(labels, ids)
    if ids.size == 0:
        return {name: np.zeros(0, dtype=_DTYPES[name]) for name in MORPHOLOGY}
    rows, cols, index = _pixels(labels, ids)
    geo = _geometry(labels, np.pad(labels, 1), rows, cols, index, ids)
    return {name: geo[name] for name in MORPHOLOGY}


def _geometry(
    labels: np.ndarray,
    padded: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    index: np.ndarray,
    ids: np.ndarray,
) -> dict[str, np.ndarray]:
    """Bounding boxes, centroid offsets and the morphology of every measured nucleus."""
    n = int(ids.size)
    geo = _moments(rows, cols, index, n, ids)
    geo["perimeter"] = _perimeter(padded, rows, cols, index, n)
    geo["euler_number"] = _euler(padded, rows, cols, index, n)
    geo["filled_area"] = _filled_area(rows, cols, index, geo)
    geo["solidity"] = geo["area"] / geo["convex_area"]
    return geo


def _check(
    labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray, *, mpp: float, scale: float
) -> np.ndarray:
    """Validate the inputs of :func:`measure`; return ``ids`` as int64."""
    arr = _check_ids(labels, ids)
    if rgb.shape != (*labels.shape, 3) or rgb.dtype != np.uint8:
        raise ValueError(
            f"rgb must be uint8 of shape {(*labels.shape, 3)} (the labels' window), "
            f"got {rgb.dtype} {rgb.shape}"
        )
    if not (math.isfinite(mpp) and mpp > 0 and math.isfinite(scale) and scale > 0):
        raise ValueError(f"mpp and scale must be positive, got mpp={mpp}, scale={scale}")
    return arr


def _check_ids(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Validate a label window and the ids to measure in it; return ``ids`` as int64."""
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.ndim}-D {labels.dtype}")
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"ids must be a 1-D integer array, got {arr.ndim}-D {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr == 0) or np.unique(arr).size != arr.size:
        raise ValueError("ids must be distinct non-zero label values")
    return arr


def _lookup(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Output row of each label value: its index in ``ids``, or -1 if it is not measured."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == values, order[pos], -1)


def _pixels(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and output row of every pixel of a measured label, in raster order."""
    rows, cols = np.nonzero(labels)
    index = _lookup(labels[rows, cols].astype(np.int64), ids)
    keep = index >= 0
    return rows[keep], cols[keep], index[keep]


def _moments(
    rows: np.ndarray, cols: np.ndarray, index: np.ndarray, n: int, ids: np.ndarray
) -> dict[str, np.ndarray]:
    """Area, bbox, centroid, the inertia-tensor measures (exact integer moments) and the convex
    area, from the pixels sorted by nucleus (raster order within each)."""
    counts = np.bincount(index, minlength=n)
    if np.any(counts == 0):
        missing = ids[counts == 0][:10].tolist()
        raise ValueError(f"ids not present in labels: {missing}")
    order = np.argsort(index, kind="stable")
    r = rows[order].astype(np.int64)
    c = cols[order].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row0, col0 = np.minimum.reduceat(r, starts), np.minimum.reduceat(c, starts)
    row1, col1 = np.maximum.reduceat(r, starts) + 1, np.maximum.reduceat(c, starts) + 1
    seg = np.repeat(np.arange(n, dtype=np.int64), counts)
    lr, lc = r - row0[seg], c - col0[seg]  # local coordinates keep the sums small and exact
    s_r, s_c = np.add.reduceat(lr, starts), np.add.reduceat(lc, starts)
    s_rr, s_cc = np.add.reduceat(lr * lr, starts), np.add.reduceat(lc * lc, starts)
    s_rc = np.add.reduceat(lr * lc, starts)
    # n^2 times the central second moments over n, as exact Python integers (object arrays:
    # n * sum(x^2) overflows int64 for regions above ~1,400 px a side; a few thousand nuclei
    # cost well under a millisecond this way).
    n_obj = counts.astype(object)
    n_rr = n_obj * s_rr.astype(object) - s_r.astype(object) ** 2
    n_cc = n_obj * s_cc.astype(object) - s_c.astype(object) ** 2
    n_rc = n_obj * s_rc.astype(object) - s_r.astype(object) * s_c.astype(object)
    equal_variances = np.asarray(n_rr == n_cc, dtype=bool)
    n2 = counts.astype(np.float64) ** 2
    # regionprops' inertia tensor [[a, b], [b, c]]: a = col variance, c = row variance.
    a, b, cc = (
        n_cc.astype(np.float64) / n2,
        -(n_rc.astype(np.float64) / n2),
        n_rr.astype(np.float64) / n2,
    )  # b is -0.0, not 0.0, as in regionprops
    root = np.sqrt(((a - cc) / 2.0) ** 2 + b * b)
    l1 = np.maximum((a + cc) / 2.0 + root, 0.0)
    l2 = np.maximum((a + cc) / 2.0 - root, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.maximum(1.0 - l2 / l1, 0.0)))
    orientation = np.where(
        equal_variances,
        np.where(b < 0, math.pi / 4.0, -math.pi / 4.0),
        0.5 * np.arctan2(-2.0 * b, cc - a),
    )
    area = counts.astype(np.float64)
    bbox_area = ((row1 - row0) * (col1 - col0)).astype(np.float64)
    convex = convex_areas(lr, lc, seg, n).astype(np.float64)
    return {
        "convex_area": convex,
        "row0": row0,
        "col0": col0,
        "row1": row1,
        "col1": col1,
        # offset of the centroid from the bbox corner: the same in every window that holds the
        # nucleus, so adding the (integer) global corner gives bit-identical global centroids
        "centroid_drow": s_r / area,
        "centroid_dcol": s_c / area,
        "area": area,
        "bbox_area": bbox_area,
        "extent": area / bbox_area,
        "equivalent_diameter": np.sqrt(4.0 * area / math.pi),
        "inertia_tensor_eigvals_0": l1,
        "inertia_tensor_eigvals_1": l2,
        "major_axis_length": 4.0 * np.sqrt(l1),
        "minor_axis_length": 4.0 * np.sqrt(l2),
        "eccentricity": ecc,
        "orientation": orientation,
    }


def _perimeter(
    padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, index: np.ndarray, n: int
) -> np.ndarray:
    """skimage.measure.perimeter(mask, 4) of every nucleus, from its pixels' neighbours.

    ``padded`` is the label window with a one-pixel background border; a pixel is on the
    border when a 4-neighbour is not of its label, and each border pixel is weighted by which
    of its 8 neighbours are border pixels of the same label (scikit-image's code table).
    """
    pr, pc = rows + 1, cols + 1
    own = padded[pr, pc]
    interior = np.ones(rows.shape, dtype=bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        interior &= padded[pr + dr, pc + dc] == own
    edge = ~interior
    br, bc, label = pr[edge], pc[edge], own[edge]
    on_border = np.zeros(padded.shape, dtype=bool)
    on_border[br, bc] = True
    code = np.ones(br.shape, dtype=np.intp)
    for dr, dc, weight in _NEIGHBOURS:
        qr, qc = br + dr, bc + dc
        code += weight * ((padded[qr, qc] == label) & on_border[qr, qc])
    return np.bincount(index[edge], weights=_PERIMETER_WEIGHTS[code], minlength=n)


def _euler(
    padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, index: np.ndarray, n: int
) -> np.ndarray:
    """skimage.measure.euler_number(mask, connectivity=2) of every nucleus, by 2x2 bit quads.

    Only three quad configurations have a non-zero coefficient for 8-connectivity (Gray's bit
    quads, skimage's EULER_COEFS2D_8); each is counted at one pixel of its label: the label
    alone at the top-left (+1; the pixel is that top-left), everywhere but the bottom-right
    (-1; the pixel is the top-left), and on the anti-diagonal alone (-1; the pixel is the
    top-right).
    """
    pr, pc = rows + 1, cols + 1
    own = padded[pr, pc]
    east = padded[pr, pc + 1] == own
    south = padded[pr + 1, pc] == own
    south_east = padded[pr + 1, pc + 1] == own
    west = padded[pr, pc - 1] == own
    south_west = padded[pr + 1, pc - 1] == own
    alone = ~east & ~south & ~south_east
    three = east & south & ~south_east
    anti = south_west & ~west & ~south
    value = alone.astype(np.int64) - three - anti
    return np.bincount(index, weights=value, minlength=n).astype(np.int64)


def _filled_area(
    rows: np.ndarray, cols: np.ndarray, index: np.ndarray, geo: dict[str, np.ndarray]
) -> np.ndarray:
    """Area with holes filled (8-connected background, as regionprops' ``area_filled``), per
    nucleus: every nucleus that could hold a hole is filled at once, each on its own mask.

    The masks are laid side by side on one canvas (:func:`_shelves`), each in its bounding
    box, the boxes one background pixel apart and from the canvas edge. A background pixel of
    a box then reaches the canvas edge exactly when it reaches its own box's edge (the only
    way out of a box is through its edge pixels into the gap around it, and the gaps all join
    the edge), so one ``binary_fill_holes`` of the canvas fills each mask as filling it alone
    in its box would; each filled pixel is credited to the box it lies in. One call replaces
    one per nucleus (~60 µs of scipy's per-call work each: 70 ms for a 2048 px tile's 1,200
    nuclei). A box under 3 px a side, or all nucleus, has no hole and is not drawn.
    """
    filled = geo["area"].copy()
    heights = (geo["row1"] - geo["row0"]).astype(np.int64)
    widths = (geo["col1"] - geo["col0"]).astype(np.int64)
    may_hold = (heights >= 3) & (widths >= 3) & (geo["area"] < geo["bbox_area"])
    boxes = np.flatnonzero(may_hold)
    if boxes.size == 0:
        return filled
    top, left, shelf_tops, shelf_of, shape = _shelves(heights[boxes], widths[boxes])
    slot = np.full(filled.size, -1, np.int64)
    slot[boxes] = np.arange(boxes.size)
    drawn = slot[index] >= 0
    at = slot[index[drawn]]
    canvas = np.zeros(shape, bool)
    canvas[
        top[at] + rows[drawn] - geo["row0"][index[drawn]],
        left[at] + cols[drawn] - geo["col0"][index[drawn]],
    ] = True
    hole_y, hole_x = np.nonzero(ndi.binary_fill_holes(canvas, _FILL_STRUCTURE) & ~canvas)
    if hole_y.size:
        # the box of a hole pixel: its shelf by row, then the last box of that shelf starting
        # at or left of it
        width = shape[1]
        keys = shelf_of * width + left  # distinct: one box per (shelf, left)
        placed = np.argsort(keys)
        shelf = np.searchsorted(shelf_tops, hole_y, side="right") - 1
        owner = placed[np.searchsorted(keys[placed], shelf * width + hole_x, side="right") - 1]
        filled += np.bincount(boxes[owner], minlength=filled.size)
    return filled


def _shelves(
    heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Boxes laid on shelves of a canvas, tallest first, one pixel apart and from the edge.

    Returns each box's top and left, the shelves' top rows (increasing), each box's shelf and
    the canvas shape. A few thousand boxes: a Python loop of a millisecond.
    """
    width = max(2048, int(widths.max()) + 2)
    order = np.argsort(-heights, kind="stable")
    top = np.zeros(heights.size, np.int64)
    left = np.zeros(heights.size, np.int64)
    shelf_of = np.zeros(heights.size, np.int64)
    shelf_tops = [1]
    x, shelf_h = 1, 0
    for i in order.tolist():
        w = int(widths[i])
        if x + w + 1 > width:  # start the next shelf below this one
            shelf_tops.append(shelf_tops[-1] + shelf_h + 1)
            x, shelf_h = 1, 0
        top[i], left[i], shelf_of[i] = shelf_tops[-1], x, len(shelf_tops) - 1
        x += w + 1
        shelf_h = max(shelf_h, int(heights[i]))
    height = shelf_tops[-1] + shelf_h + 1
    return top, left, np.asarray(shelf_tops), shelf_of, (height, width)
