"""CellProfiler-style measurements of many nuclei at once (``--features full``): intensity,
texture and shape families on a label window, neighbourhood on a slide's finished table.

Definitions follow CellProfiler's modules (MeasureObjectIntensity, MeasureTexture,
MeasureObjectSizeShape, MeasureObjectNeighbors):

- **intensity** of the nuclear signal (haematoxylin optical density for H&E, the nuclear
  channel for fluorescence): integrated (sum), mean, std (population), min, max, median and
  quartiles (linear interpolation between order statistics, numpy's default), mass
  displacement (µm between the intensity-weighted and the plain centroid), and integrated /
  mean intensity of the edge pixels (object pixels with a 4-neighbour outside the object, the
  image's border not counting as outside);
- **texture**: Haralick's 13 features, :mod:`nucscale.features._texture`;
- **shape**: form factor ``4 pi area / perimeter**2`` and compactness ``2 pi mean(r**2) /
  area`` (r: a pixel's distance from the centroid; 1 for a filled disc) from pixel counts;
  minimum and maximum Feret diameter (µm) of the convex hull that ``convex_area`` counts,
  :func:`~nucscale.features._convex.feret_diameters` (the maximum within a pixel of
  scikit-image's ``feret_diameter_max``); Zernike moments ``|Z_nm|`` through degree 9 of the
  binary mask, :mod:`nucscale.features._zernike` (equal to mahotas' ``zernike_moments``);
- **neighbourhood** (:func:`neighbours`): neighbours within a radius in µm, nearest-neighbour
  distance, from the slide's centroids, so exact across tile borders.

All from ``bincount`` / ``reduceat`` passes over the pixels and hulls built for all objects in
lock step (why hand-written: per-object calls cost more than the whole set; each family is
tested against a per-object reference).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree
from skimage.color import rgb2hed

from nucscale.features._convex import feret_diameters
from nucscale.features._owners import owned_pixels
from nucscale.features._texture import HARALICK, cooccurrence, haralick, quantize, top_levels
from nucscale.features._zernike import DEGREE as ZERNIKE_DEGREE
from nucscale.features._zernike import zernike_indices, zernike_moments

INTENSITY_FULL = (
    "integrated_intensity",
    "mean_intensity",
    "std_intensity",
    "min_intensity",
    "max_intensity",
    "median_intensity",
    "lower_quartile_intensity",
    "upper_quartile_intensity",
    "mass_displacement",
    "integrated_intensity_edge",
    "mean_intensity_edge",
)
TEXTURE = tuple(f"texture_{name}" for name in HARALICK)
ZERNIKE = tuple(f"zernike_{n}_{m}" for n, m in zernike_indices(ZERNIKE_DEGREE))
SHAPE_FULL = ("form_factor", "compactness", "feret_min_um", "feret_max_um", *ZERNIKE)
NEIGHBOURS = ("neighbours", "nearest_neighbour_distance")


def _relative(rr: np.ndarray, cc: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to each object's first pixel (row-major): sums of them round
    the same wherever the window starts, so a nucleus measures the same in every tile."""
    first = np.unique(owner, return_index=True)[1]
    return (rr - rr[first][owner]).astype(np.float64), (cc - cc[first][owner]).astype(np.float64)


def _quantiles(values: np.ndarray, owner: np.ndarray, n: int, qs: tuple[float, ...]) -> list:
    """Per-object quantiles (numpy's linear rule; 0 and 1 are the minimum and maximum) from
    one sort of all pixels."""
    span = values.max() - values.min() if values.size else 0.0
    # one float key: the owner, then the value scaled into [0, 0.5) (ties keep any order)
    key = owner + (values - values.min()) / (2 * span) if span > 0 else owner.astype(float)
    v = values[np.argsort(key, kind="stable")]
    counts = np.bincount(owner, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for q in qs:
        pos = q * (counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts - 1)
        frac = pos - lo
        out.append(v[starts + lo] + frac * (v[starts + hi] - v[starts + lo]))
    return out


def intensity_family(
    signal: np.ndarray, labels: np.ndarray, ids: np.ndarray, mpp: float
) -> dict[str, np.ndarray]:
    """The intensity columns of the nuclei ``ids`` of a label window (float64)."""
    n = len(ids)
    owner_img, rr, cc, owner = owned_pixels(labels, ids)
    v = np.asarray(signal, np.float64)[rr, cc]
    count = np.bincount(owner, minlength=n).astype(np.float64)
    total = np.bincount(owner, weights=v, minlength=n)
    mean = total / count
    dev = v - mean[owner]
    out = {
        "integrated_intensity": total,
        "mean_intensity": mean,
        "std_intensity": np.sqrt(np.bincount(owner, weights=dev * dev, minlength=n) / count),
    }
    lowest, lower, median, upper, highest = _quantiles(v, owner, n, (0, 0.25, 0.5, 0.75, 1))
    out["min_intensity"], out["max_intensity"] = lowest, highest
    out["median_intensity"] = median
    out["lower_quartile_intensity"], out["upper_quartile_intensity"] = lower, upper
    ry, rx = _relative(rr, cc, owner)
    cy, cx = (np.bincount(owner, weights=a, minlength=n) / count for a in (ry, rx))
    with np.errstate(invalid="ignore", divide="ignore"):
        wy = np.bincount(owner, weights=ry * v, minlength=n) / total
        wx = np.bincount(owner, weights=rx * v, minlength=n) / total
    out["mass_displacement"] = np.hypot(wy - cy, wx - cx) * mpp
    # beyond the window's edge counts as the pixel itself: a nucleus cut by the image border
    # has no edge there (scikit-image's find_boundaries rule)
    padded = np.pad(owner_img, 1, mode="edge")
    pr, pc = rr + 1, cc + 1
    edge = np.zeros(len(owner), bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        edge |= padded[pr + dr, pc + dc] != owner
    edge_total = np.bincount(owner[edge], weights=v[edge], minlength=n)
    out["integrated_intensity_edge"] = edge_total
    out["mean_intensity_edge"] = edge_total / np.bincount(owner[edge], minlength=n)
    return out


def shape_family(
    labels: np.ndarray, ids: np.ndarray, area: np.ndarray, perimeter: np.ndarray, *, mpp: float
) -> dict[str, np.ndarray]:
    """Form factor, compactness, Feret diameters (µm, at ``mpp`` µm per pixel) and Zernike
    moments; ``area`` (px) and ``perimeter`` (px) as the morphology columns give them, rows in
    the order of ``ids``."""
    n = len(ids)
    _, rr, cc, owner = owned_pixels(labels, ids)
    count = np.bincount(owner, minlength=n).astype(np.float64)
    ry, rx = _relative(rr, cc, owner)
    cy = np.bincount(owner, weights=ry, minlength=n) / count
    cx = np.bincount(owner, weights=rx, minlength=n) / count
    r2 = (ry - cy[owner]) ** 2 + (rx - cx[owner]) ** 2
    mean_r2 = np.bincount(owner, weights=r2, minlength=n) / count
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "form_factor": 4 * np.pi * np.asarray(area) / np.asarray(perimeter) ** 2,
            "compactness": 2 * np.pi * mean_r2 / count,
        }
    order = np.argsort(owner, kind="stable")  # by (nucleus, row, col)
    rows, cols, by = rr[order].astype(np.int64), cc[order].astype(np.int64), owner[order]
    feret_min, feret_max = feret_diameters(rows, cols, by, n)
    out["feret_min_um"], out["feret_max_um"] = feret_min * mpp, feret_max * mpp
    moments = zernike_moments(rows, cols, by, n, ZERNIKE_DEGREE)
    out.update({name: moments[:, k] for k, name in enumerate(ZERNIKE)})
    return out


def texture_family(
    signal: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    *,
    low: float,
    high: float,
    levels: int = 8,
    distance: int = 1,
) -> dict[str, np.ndarray]:
    """Haralick features of the signal quantised to ``levels`` grey levels over the fixed
    range [low, high], at ``distance`` px, averaged over 4 directions."""
    grey = quantize(signal, low, high, levels)
    feats = haralick(
        cooccurrence(grey, labels, ids, levels, distance), top_levels(grey, labels, ids)
    )
    return {f"texture_{name}": feats[name] for name in HARALICK}


def neighbours(x_um: np.ndarray, y_um: np.ndarray, radius_um: float) -> dict[str, np.ndarray]:
    """Per nucleus: how many other nuclei have their centroid within ``radius_um``, and the
    distance to the nearest one (NaN when alone), from a whole slide's centroids."""
    points = np.column_stack([x_um, y_um])
    n = len(points)
    if n == 0:
        return {"neighbours": np.zeros(0, np.int64), "nearest_neighbour_distance": np.zeros(0)}
    tree = cKDTree(points)
    within = tree.query_ball_point(points, r=radius_um, return_length=True) - 1
    if n == 1:
        return {"neighbours": np.asarray(within), "nearest_neighbour_distance": np.full(1, np.nan)}
    dist, _ = tree.query(points, k=2)
    return {"neighbours": np.asarray(within), "nearest_neighbour_distance": dist[:, 1]}


#: Grey levels and fixed signal range of the texture features, per modality: haematoxylin
#: optical density (rgb2hed's unit, as ``od_haematoxylin``) for brightfield, the nuclear
#: channel scaled to [0, 1] for fluorescence. Fixed, so a nucleus gets the same grey levels in
#: every tile and every slide.
TEXTURE_LEVELS = 8
TEXTURE_RANGE = {"brightfield": (0.0, 0.25), "fluorescence": (0.0, 1.0)}
#: Radius of the neighbour count, µm (about two nucleus diameters).
NEIGHBOUR_RADIUS_UM = 20.0

FULL_SCHEMA = pa.schema(
    [pa.field("nucleus_id", pa.int64())]
    + [pa.field(name, pa.float64()) for name in (*INTENSITY_FULL, *TEXTURE, *SHAPE_FULL)]
    + [pa.field("neighbours", pa.int64()), pa.field("nearest_neighbour_distance", pa.float64())]
)


def nuclear_signal(rgb: np.ndarray, modality: str) -> np.ndarray:
    """The nuclear signal of an RGB window: haematoxylin optical density (brightfield), or the
    grey nuclear channel scaled to [0, 1] (fluorescence, read as grey repeated to RGB)."""
    if modality == "fluorescence":
        return rgb[..., 0].astype(np.float64) / 255.0
    return rgb2hed(rgb)[..., 0]


def window_columns(
    labels: np.ndarray,
    rgb: np.ndarray,
    ids: np.ndarray,
    *,
    modality: str,
    mpp: float,
    area: np.ndarray,
    perimeter: np.ndarray,
) -> dict[str, np.ndarray]:
    """The intensity, texture and shape columns of the nuclei ``ids`` of a window (rows in the
    order of ``ids``; ``area`` and ``perimeter`` in any one unit, as the nucleus table has
    them). The neighbourhood columns need the whole slide: :func:`neighbours`."""
    if len(ids) == 0:
        return {name: np.zeros(0) for name in (*INTENSITY_FULL, *TEXTURE, *SHAPE_FULL)}
    signal = nuclear_signal(rgb, modality)
    low, high = TEXTURE_RANGE["fluorescence" if modality == "fluorescence" else "brightfield"]
    return {
        **intensity_family(signal, labels, ids, mpp),
        **texture_family(signal, labels, ids, low=low, high=high, levels=TEXTURE_LEVELS),
        **shape_family(labels, ids, area, perimeter, mpp=mpp),
    }
