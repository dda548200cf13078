"""Stain-aware training images: eosin-rich distractors and H&E rendered from fluorescence.

DSB 2018 has six H&E training images, nearly all nuclei on pale background; a real H&E slide
is mostly eosin: collagen fibres, muscle, red blood cells, keratin. A network that never saw
eosin-dense structures labelled as background outlines them as nuclei (the earlier default
model did so for 29 % of its CMU-1 objects). This module generates what DSB lacks, from code
and the DSB nuclei themselves, not from any evaluation slide:

- :func:`eosin_texture`: a procedural eosin optical-density field: smooth tissue density,
  wavy fibre bundles (anisotropically smoothed noise, rotated), red-blood-cell discs of 6-8 µm,
  and holes of bare glass;
- :func:`compose_he`: Beer-Lambert rendering of haematoxylin and eosin densities with jittered
  stain vectors (the haematoxylin / eosin colours vary between labs and scanners);
- :func:`add_eosin`: the texture (and, around the labelled nuclei, a cytoplasm of some
  haematoxylin and eosin) added to a real H&E image's stain densities (nuclei and labels
  unchanged): DSB's nuclei on pale ground become nuclei inside tissue;
- :func:`pale_nuclei`: a real H&E image's nuclei made paler one by one (DSB's H&E nuclei are
  nearly all dark; epithelial nuclei often are not);
- :func:`fluorescence_as_he`: a fluorescence image rendered as tissue: each labelled nucleus
  with its own haematoxylin density (dark lymphocyte-like to pale vesicular nuclei with a dark
  rim), its chromatin from the fluorescence signal, a cytoplasm around it, eosin-rich stroma
  between the cells: new H&E-looking images of thousands of labelled nuclei.

Stain vectors: Ruifrok & Johnston (2001) optical-density colours as used by scikit-image's
``rgb2hed``; densities here are natural-log optical densities per unit stain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.color import hed2rgb, rgb2hed
from skimage.segmentation import expand_labels, find_boundaries

#: Optical density (natural log) per unit haematoxylin / eosin (Ruifrok & Johnston).
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _upsample(f: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small field to ``shape``."""
    zoom = (shape[0] / f.shape[0], shape[1] / f.shape[1])
    out = ndi.zoom(f, zoom, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation; for a wide ``sigma``
    smoothed at a coarser grid and interpolated (the same field, a tenth of the work)."""
    step = max(1, int(sigma // 3))
    if step == 1:
        f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    else:
        small = (-(-shape[0] // step) + 1, -(-shape[1] // step) + 1)
        f = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / step)
        f = _upsample(f, shape)
    return f / (f.std() + 1e-6)


def _fibres(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Wavy fibre bundles in [0, 1]: noise smoothed along one axis far more than across, then
    rotated to a random angle and bent by a smooth displacement field."""
    h, w = shape
    # built at half resolution (fibres are smooth along and >= 1 px across), then enlarged
    side = int(np.ceil(np.hypot(h, w) / 2)) + 4
    along, across = rng.uniform(4, 15), rng.uniform(0.5, 2.5)
    f = ndi.gaussian_filter(
        rng.standard_normal((side, side)).astype(np.float32), (across, along), mode="wrap"
    )
    f = ndi.rotate(f, rng.uniform(0, 180), reshape=False, order=1, mode="wrap")
    y0, x0 = (side - -(-h // 2)) // 2, (side - -(-w // 2)) // 2
    f = _upsample(f[y0 : y0 + -(-h // 2), x0 : x0 + -(-w // 2)], shape)
    f /= f.std() + 1e-6
    # bend: sample at coordinates displaced by smooth noise
    amp = rng.uniform(0, 6)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = _smooth_noise(shape, 20, rng) * amp, _smooth_noise(shape, 20, rng) * amp
    f = ndi.map_coordinates(f, [gy + dy, gx + dx], order=1, mode="reflect")
    t = rng.uniform(0.0, 1.0)
    return np.clip((f - t) / rng.uniform(0.4, 1.2), 0.0, 1.0)


def _discs(shape: tuple[int, int], rng: np.random.Generator, px_per_um: float) -> np.ndarray:
    """Red-blood-cell-like discs (6-8 µm, paler centre), in [0, 1]."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    n = int(rng.poisson(rng.uniform(0, 12) * h * w / 256**2))
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(3.0, 4.0) * px_per_um
        y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d2 = ((gy - cy) ** 2 + (gx - cx) ** 2) / r**2
        disc = np.clip(1.0 - d2, 0.0, 1.0) ** 0.3 * (1.0 - 0.35 * np.exp(-d2 * 4))
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], disc.astype(np.float32))
    return out


def eosin_texture(
    shape: tuple[int, int], rng: np.random.Generator, px_per_um: float = 2.0
) -> np.ndarray:
    """A procedural eosin density field (natural-log OD per unit stain, about 0-1.5)."""
    base = 1.0 / (1.0 + np.exp(-_smooth_noise(shape, rng.uniform(10, 40), rng) * 2))
    density = base * rng.uniform(0.05, 0.4)
    density += _fibres(shape, rng) * rng.uniform(0.2, 1.0)
    if rng.random() < 0.5:
        density += _fibres(shape, rng) * rng.uniform(0.1, 0.6)
    density += _discs(shape, rng, px_per_um) * rng.uniform(0.6, 1.4)
    if rng.random() < 0.5:  # gaps of bare glass
        holes = _smooth_noise(shape, rng.uniform(8, 30), rng) < rng.uniform(-1.5, 0.0)
        density[holes] *= 0.05
    return density.astype(np.float32)


def stain_vectors(rng: np.random.Generator, amount: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin OD colours, each jittered by up to ``amount`` per component."""
    h = _unit(np.clip(HAEMATOXYLIN + rng.uniform(-amount, amount, 3), 0.02, None))
    e = _unit(np.clip(EOSIN + rng.uniform(-amount, amount, 3), 0.02, None))
    return h, e


def compose_he(
    haematoxylin: np.ndarray,
    eosin: np.ndarray,
    rng: np.random.Generator,
    background: float = 245.0,
) -> np.ndarray:
    """RGB uint8 of stain densities by Beer-Lambert: ``I = I0 exp(-(dH vH + dE vE))``."""
    vh, ve = stain_vectors(rng)
    od = haematoxylin[..., None] * vh + eosin[..., None] * ve
    rgb = background * np.exp(-od)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _cytoplasm(
    labels: np.ndarray, rng: np.random.Generator, px_per_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """(cell mask, cytoplasm mask): nuclei grown by 1.5-6 µm (cells), minus the nuclei."""
    grow = rng.uniform(1.5, 6.0) * px_per_um
    cells = expand_labels(labels, distance=grow) > 0
    return cells, cells & (labels == 0)


def _tissue_densities(
    labels: np.ndarray, rng: np.random.Generator, px_per_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin densities of everything but the nuclei: cytoplasm around the
    labelled nuclei (some haematoxylin, more eosin, grainy), eosin texture between cells, and
    sometimes basophilic fibres (keratin flakes, mucus strands, elastic fibres: purple, long,
    paler than nuclei) that are not nuclei either."""
    shape = labels.shape
    de = eosin_texture(shape, rng, px_per_um)
    dh = np.zeros(shape, np.float32)
    if rng.random() < 0.25:
        strands = _fibres(shape, rng) * (labels == 0)
        dh += strands * rng.uniform(0.1, 0.45)
        de += strands * rng.uniform(0.1, 0.6)
    if rng.random() < 0.75:
        cells, cyto = _cytoplasm(labels, rng, px_per_um)
        grain = 1.0 + 0.3 * _smooth_noise(shape, 1.5, rng)
        mix = rng.uniform(0.5, 1.0)  # how much the cytoplasm replaces the stroma texture
        de = np.where(cells, de * (1 - mix) + rng.uniform(0.15, 0.8) * grain * mix, de)
        dh = np.where(cyto, rng.uniform(0.0, 0.7) * grain, dh)  # basophilic cytoplasm too
    return dh.astype(np.float32), de.astype(np.float32)


def add_eosin(
    image: np.ndarray,
    rng: np.random.Generator,
    px_per_um: float = 2.0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """A real H&E image with procedural tissue added to its stain densities: an eosin texture
    and, given its ``labels``, cytoplasm around its nuclei (nuclei themselves unchanged)."""
    hed = rgb2hed(image)
    lab = labels if labels is not None else np.zeros(image.shape[:2], np.int32)
    dh, de = _tissue_densities(lab, rng, px_per_um)
    # rgb2hed's unit: natural-log OD / log(1e6); keep the nuclei's own densities as they are
    outside = (lab == 0).astype(np.float32)
    scale = rng.uniform(0.5, 1.2) / np.log(1e6)
    hed[..., 1] += de * scale
    hed[..., 0] += dh * outside * scale
    return np.clip(np.rint(hed2rgb(hed) * 255), 0, 255).astype(np.uint8)


def pale_nuclei(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real H&E image whose nuclei are made paler one by one: each nucleus's haematoxylin
    density scaled by its own factor in [0.3, 1] inside, less at its rim (vesicular nuclei
    of epithelium keep a darker nuclear membrane); everything else unchanged."""
    n = int(labels.max())
    if n == 0:
        return image
    hed = rgb2hed(image)
    factor = rng.uniform(0.3, 1.0, n + 1)
    factor[0] = 1.0
    rim = find_boundaries(labels, connectivity=1, mode="inner")
    scale = np.where(rim, np.maximum(factor[labels], 0.7), factor[labels])
    hed[..., 0] *= scale
    return np.clip(np.rint(hed2rgb(hed) * 255), 0, 255).astype(np.uint8)


def fluorescence_as_he(
    signal: np.ndarray,
    rng: np.random.Generator,
    px_per_um: float = 2.0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """RGB uint8 H&E-looking image of a fluorescence nuclear ``signal`` in [0, 1] (nuclei
    bright) and, when given, its instance ``labels`` (see the module docstring)."""
    lab = labels if labels is not None else (signal > 0.5).astype(np.int32)
    n = int(lab.max())
    nuc = lab > 0
    chrom = np.clip(signal, 0.0, 1.0) ** rng.uniform(0.6, 1.4)
    chrom = chrom + _smooth_noise(signal.shape, 1.0, rng) * 0.05  # chromatin grain
    # per nucleus: pale vesicular .. dense lymphocyte (CMU-1's basal nuclei reach 2-5 in
    # scikit-image's HED unit, DSB's ~1: log-uniform covers both)
    density = np.exp(rng.uniform(np.log(0.25), np.log(3.0), n + 1))
    vesicular = rng.random(n + 1) < 0.45  # pale inside, dark nuclear membrane
    rim = find_boundaries(lab, connectivity=1, mode="inner")
    inner = np.where(vesicular[lab], rng.uniform(0.25, 0.5), 1.0)
    dh_nuc = density[lab] * (0.45 + 0.55 * np.clip(chrom, 0, 1)) * np.where(rim, 1.0, inner)
    dh, de = _tissue_densities(lab, rng, px_per_um)
    dh = np.where(nuc, dh_nuc, dh)
    de = de + nuc * rng.uniform(0.0, 0.3)  # nuclei take some eosin too
    return compose_he(np.clip(dh, 0, None), de, rng, background=rng.uniform(225, 250))
