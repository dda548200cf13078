"""Random training patches and their augmentation, on numpy arrays, from a seeded generator.

A patch is cut from the *instance labels* together with the image, geometric changes are
applied to both, and the targets (:func:`nucscale.train._data.targets`) are computed from the
transformed labels afterwards, so image and targets can never be misaligned.

- scale jitter: a square of ``patch / s`` px (``s`` log-uniform in ``scale``) resized to
  ``patch`` (bilinear image, nearest labels); regions beyond the image are the background
  colour (median of label-0 pixels) and label 0;
- flips and rot90;
- colour: H&E stain jitter in HED space (brightfield only), channel permutation, grey
  conversion, inversion (brightfield <-> fluorescence look), brightness, contrast and gamma.
"""

from __future__ import annotations

import numpy as np
from skimage.color import hed2rgb, rgb2hed
from skimage.transform import resize


def crop_scaled(
    image: np.ndarray,
    labels: np.ndarray,
    patch: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.5, 1.6),
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``patch`` x ``patch`` crop at a random scale (image uint8, labels int32).

    The default range spans the nucleus sizes a 0.5 µm/px model meets: DSB 2018 H&E nuclei are
    18-50 px across, CMU-1's about 16 px at 0.5 µm/px, fluorescence ones 9-45 px.
    """
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    size = max(8, round(patch / s))
    h, w = labels.shape
    y = int(rng.integers(min(0, h - size), max(0, h - size) + 1))
    x = int(rng.integers(min(0, w - size), max(0, w - size) + 1))
    bg = labels == 0
    fill = np.median(image[bg], axis=0) if bg.any() else np.zeros(3)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = fill.astype(np.uint8)
    lab = np.zeros((size, size), np.int32)
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + size, h), min(x + size, w)
    img[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    lab[y0 - y : y1 - y, x0 - x : x1 - x] = labels[y0:y1, x0:x1]
    if size != patch:
        img = resize(img, (patch, patch), order=1, preserve_range=True, anti_aliasing=size > patch)
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        lab = resize(lab, (patch, patch), order=0, preserve_range=True, anti_aliasing=False)
        lab = lab.astype(np.int32)
    return img, lab


def flip_rotate(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal flip, vertical flip and rot90 (same on both)."""
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if rng.random() < 0.5:
        image, labels = image[::-1], labels[::-1]
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(image, k)), np.ascontiguousarray(np.rot90(labels, k))


def hed_jitter(image: np.ndarray, rng: np.random.Generator, amount: float = 0.05) -> np.ndarray:
    """Perturb haematoxylin / eosin / DAB densities: ``d * a + b`` per stain.

    ``a ~ U(1 ± 4 amount)``, ``b ~ U(± amount / 10)``: scikit-image's HED values are optical
    densities divided by ``-log(1e-6)`` (background ~0.01, dense nuclei ~0.2), so the shift
    is scaled down to move a typical background by ~10 grey levels, not to saturate it.
    """
    hed = rgb2hed(image)
    alpha = rng.uniform(1 - amount * 4, 1 + amount * 4, 3)
    beta = rng.uniform(-amount, amount, 3) * 0.1
    out = hed2rgb(hed * alpha + beta)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def colour(image: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
    """Colour / intensity augmentation covering both modalities."""
    if modality.startswith("brightfield") and rng.random() < 0.7:
        image = hed_jitter(image, rng)
    x = image.astype(np.float32) / 255.0
    if rng.random() < 0.3:
        x = x[..., rng.permutation(3)]
    if rng.random() < 0.2:
        x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    if rng.random() < 0.25:
        x = 1.0 - x
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)  # contrast, brightness
    x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-0.4, 0.4))  # gamma
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    modality: str,
    patch: int,
    rng: np.random.Generator,
    *,
    colour_aug: bool = True,
    scale: tuple[float, float] = (0.5, 1.6),
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (patch, patch, 3) uint8 image and its (patch, patch) labels."""
    img, lab = crop_scaled(image, labels, patch, rng, scale)
    img, lab = flip_rotate(img, lab, rng)
    if colour_aug:
        img = colour(img, modality, rng)
    return img, lab
