"""Synthetic blood-smear images with known cells and shapes. **The data are generated, not real.**

No labelled blood smear can be had here, so the red-cell shape experiment (sickle versus normal)
runs on images drawn by this module, each with its true instance labels and each cell's class:

- ``discocyte``: a normal red cell, a disc of radius 3.4-4.1 µm (axis ratio 0.88-1), dense at
  the rim and paler at the centre (the central pallor of the biconcave disc: the density there
  drops by 35-70 %, as a Gaussian of 0.45 radius);
- ``sickle``: a drepanocyte, the lune between an outer arc of radius 5.5-9 µm and a flatter
  inner arc (1-1.5 times the radius) offset so that the crescent is 2-3.2 µm wide at its
  middle: 9-15 µm long, pointed horns, uniformly dense (no pallor), 10-30 % denser than the
  discocytes;
- ``elliptocyte``: an ellipse with a long semi-axis of 4.0-5.0 µm and an axis ratio of
  0.45-0.7, with a faint elongated pallor (10-30 %).

Each image varies what real smears vary: stain (the absorbance vector of haemoglobin + eosin,
each channel within ±20 % of a Wright-Giemsa pink; the density ±15 % per image and ±8 % per
cell), illumination (background 222-242 per channel, a linear gradient of up to 6 %), focus
(Gaussian blur of 0.3-1.2 px), noise (Gaussian, sigma 1.5-4 grey levels), cell size, and
overlap: a share of cells is placed touching or overlapping a neighbour (their densities add,
as absorbances do; the cell drawn later owns the overlap in the labels). Platelets (2-3 µm
purple dots, not cells, not labelled) are scattered as distractors.

Rendering: every cell is drawn into its own window at 3x supersampling and averaged down, so
edges are anti-aliased; the RGB image is ``background * 10 ** -(density * stain)`` per channel
(Beer-Lambert), blurred, plus noise. Hand-written because no library draws smears; every
random draw comes from one ``numpy.random.Generator`` seeded per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

#: The cell classes, in label order.
CLASSES = ("discocyte", "sickle", "elliptocyte")
#: Absorbance (per unit density) of a Wright-Giemsa stained red cell, R, G, B.
_STAIN = np.array([0.07, 0.30, 0.22])
#: Absorbance of a platelet's purple granules.
_PLATELET = np.array([0.30, 0.38, 0.12])
_SUPER = 3  # supersampling factor of each cell's window


@dataclass(frozen=True)
class SmearSpec:
    """What one generated image holds.

    Attributes
    ----------
    size:
        (height, width) in pixels.
    mpp:
        Pixel size, µm/px (0.25: an oil objective; the red-cell segmenter's own).
    cells:
        Red cells drawn (some fall partly outside the image).
    shares:
        Expected share of each class of :data:`CLASSES`.
    overlap:
        Chance that a cell is placed touching or overlapping an earlier one.
    platelets:
        Platelets drawn (distractors, not labelled).
    """

    size: tuple[int, int] = (768, 768)
    mpp: float = 0.25
    cells: int = 70
    shares: tuple[float, float, float] = (0.5, 0.3, 0.2)
    overlap: float = 0.15
    platelets: int = 6


@dataclass(frozen=True)
class Smear:
    """A generated image, its true labels and its cells (``label``, ``cell_class``,
    ``centroid_x``/``centroid_y`` px, ``area_um2``, ``touches_border``)."""

    rgb: np.ndarray
    labels: np.ndarray
    cells: pd.DataFrame
    mpp: float


def _rotated(shape: tuple[int, int], angle: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) coordinates in µm of a window's supersampled pixel centres, rotated by angle,
    with the origin at the window's centre."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y = (y + 0.5) * step - h * step / 2
    x = (x + 0.5) * step - w * step / 2
    c, s = math.cos(angle), math.sin(angle)
    return c * x + s * y, -s * x + c * y


def _cell(kind: str, rng: np.random.Generator, mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, density) of one cell in its own window of pixels (coverage in 0..1)."""
    angle = rng.uniform(0, math.pi)
    if kind == "discocyte":
        r = rng.uniform(3.4, 4.1)
        q = rng.uniform(0.88, 1.0)
        extent = r
    elif kind == "elliptocyte":
        r = rng.uniform(4.0, 5.0)
        q = rng.uniform(0.45, 0.7)
        extent = r
    else:
        r, r2, shift, tip, reach = _crescent(rng)
        middle = (tip - r) / 2
        extent = max((tip + r) / 2, reach)
    half = math.ceil((extent + 1.0) / mpp)
    step = mpp / _SUPER
    u, v = _rotated((2 * half * _SUPER, 2 * half * _SUPER), angle, step)
    if kind == "sickle":
        # inside the first disc, outside the second (centred off to +u); the window is
        # centred on the crescent's bounding box, not on the first disc
        u = u + middle
        inside = (u**2 + v**2 <= r**2) & ((u - shift) ** 2 + v**2 > r2**2)
        profile = np.full(u.shape, rng.uniform(1.1, 1.3))
    else:
        rho = np.sqrt((u / r) ** 2 + (v / (q * r)) ** 2)
        inside = rho <= 1.0
        pallor = rng.uniform(0.35, 0.7) if kind == "discocyte" else rng.uniform(0.1, 0.3)
        profile = 1.0 - pallor * np.exp(-((rho / 0.45) ** 2))
    density = np.where(inside, profile, 0.0)
    shape = (2 * half, _SUPER, 2 * half, _SUPER)
    coverage = inside.reshape(shape).mean(axis=(1, 3))
    return coverage, density.reshape(shape).mean(axis=(1, 3))


def _crescent(rng: np.random.Generator) -> tuple[float, float, float, float, float]:
    """A sickle cell's outline: outer radius, inner radius, offset of the inner circle, the
    horns' u and half-length (µm); drawn until the crescent is 9-15 µm long."""
    while True:
        r = rng.uniform(5.5, 9.0)  # the outer arc: flatter when larger
        r2 = r * rng.uniform(1.0, 1.5)  # the inner arc, flatter still: a banana, not a ring
        width = rng.uniform(2.0, 3.2)  # at the middle
        shift = width + r2 - r
        # the lune lies between u = -r and the circles' crossing at u = tip, |v| <= reach
        tip = (r**2 - r2**2 + shift**2) / (2 * shift)
        reach = math.sqrt(max(r**2 - tip**2, 0.0))
        if 4.5 <= reach <= 7.5:
            return r, r2, shift, tip, reach


def _place(
    rng: np.random.Generator, spec: SmearSpec, placed: list[tuple[float, float, float]],
    size: float,
) -> tuple[float, float]:  # fmt: skip
    """A centre (y, x) px for a cell of radius ``size`` px: touching an earlier cell with
    chance ``spec.overlap``, else at least clear of every earlier cell where possible."""
    h, w = spec.size
    if placed and rng.random() < spec.overlap:
        y0, x0, r0 = placed[int(rng.integers(len(placed)))]
        d = (r0 + size) * rng.uniform(0.75, 1.0)
        a = rng.uniform(0, 2 * math.pi)
        return y0 + d * math.sin(a), x0 + d * math.cos(a)
    best = (rng.uniform(0, h), rng.uniform(0, w))
    for _ in range(60):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        if all(math.hypot(y - py, x - px) > (pr + size) * 1.05 for py, px, pr in placed):
            return y, x
        best = (y, x)
    return best


def generate_smear(spec: SmearSpec, seed: int) -> Smear:
    """One synthetic smear image with its true labels and cell table (see the module doc)."""
    rng = np.random.default_rng(seed)
    h, w = spec.size
    stain = _STAIN * rng.uniform(0.8, 1.2, 3) * rng.uniform(0.85, 1.15)
    density = np.zeros((h, w))
    platelet = np.zeros((h, w))
    labels = np.zeros((h, w), dtype=np.int32)
    rows: list[dict[str, object]] = []
    placed: list[tuple[float, float, float]] = []
    kinds = rng.choice(len(CLASSES), size=spec.cells, p=np.asarray(spec.shares) / sum(spec.shares))
    for label, k in enumerate(kinds, start=1):
        kind = CLASSES[int(k)]
        coverage, cell = _cell(kind, rng, spec.mpp)
        cell *= rng.uniform(0.92, 1.08)
        half = coverage.shape[0] // 2
        cy, cx = _place(rng, spec, placed, half * 0.8)
        placed.append((cy, cx, half * 0.8))
        y0, x0 = round(cy) - half, round(cx) - half
        ys = slice(max(y0, 0), min(y0 + 2 * half, h))
        xs = slice(max(x0, 0), min(x0 + 2 * half, w))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        win = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        density[ys, xs] += cell[win]
        mine = coverage[win] >= 0.5
        labels[ys, xs][mine] = label
        touches = y0 < 0 or x0 < 0 or y0 + 2 * half > h or x0 + 2 * half > w
        rows.append({"label": label, "cell_class": kind, "touches_border": touches})
    for _ in range(spec.platelets):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        rad = rng.uniform(1.0, 1.5) / spec.mpp
        yy, xx = np.ogrid[0:h, 0:w]
        platelet += ((yy - y) ** 2 + (xx - x) ** 2 <= rad**2) * rng.uniform(0.8, 1.2)
    od = density[..., None] * stain + platelet[..., None] * _PLATELET
    blur = rng.uniform(0.3, 1.2)
    od = ndi.gaussian_filter(od, (blur, blur, 0))
    background = rng.uniform(222, 242, 3)
    gy, gx = rng.uniform(-0.03, 0.03, 2)
    light = 1.0 + gy * np.linspace(-1, 1, h)[:, None] + gx * np.linspace(-1, 1, w)[None, :]
    rgb = background * light[..., None] * 10.0 ** (-od)
    rgb += rng.normal(0.0, rng.uniform(1.5, 4.0), rgb.shape)
    cells = _cell_table(labels, rows, spec.mpp)
    return Smear(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), labels, cells, spec.mpp)


def _cell_table(labels: np.ndarray, rows: list[dict[str, object]], mpp: float) -> pd.DataFrame:
    """The drawn cells that kept any pixel (a later cell may cover one whole), with their
    visible area and centroid."""
    table = pd.DataFrame(rows, columns=["label", "cell_class", "touches_border"])
    n = int(labels.max()) + 1
    area = np.bincount(labels.ravel(), minlength=n)
    yy, xx = np.indices(labels.shape)
    sy = np.bincount(labels.ravel(), weights=yy.ravel(), minlength=n)
    sx = np.bincount(labels.ravel(), weights=xx.ravel(), minlength=n)
    ids = table["label"].to_numpy()
    table["area_um2"] = area[ids] * mpp**2
    with np.errstate(invalid="ignore", divide="ignore"):
        table["centroid_x"] = sx[ids] / area[ids]
        table["centroid_y"] = sy[ids] / area[ids]
    return table[table["area_um2"] > 0].reset_index(drop=True)
