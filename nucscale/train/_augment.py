"""Random training patches and their augmentation, on numpy arrays, from a seeded generator.

A patch is cut from the *instance labels* together with the image, geometric changes are
applied to both, and the targets (:func:`nucscale.train._data.targets`) are computed from the
transformed labels afterwards, so image and targets can never be misaligned.

Images are already at the analysis pixel size (:func:`nucscale.train.load_samples`), so the
scale jitter is narrow: it covers the spread of nucleus sizes between tissues and errors of a
pixel-size estimate, not a change of magnification.

- scale jitter: a square of ``patch / s`` px (``s`` log-uniform in ``scale``) resized to
  ``patch`` (bilinear image, nearest labels); regions beyond the image are the background
  colour (median of label-0 pixels) and label 0;
- flips and rot90;
- then, by kind, the network's canonical input (:mod:`nucscale.models._unet_input`):

  ``brightfield``: H&E stain jitter in HED space, often procedural tissue (eosin texture,
  cytoplasm around the nuclei) added (:func:`nucscale.train._stain.add_eosin`), slight blur,
  brightness and contrast; the colour
  is kept (no channel shuffles or grey: hue is what separates haematoxylin from eosin);
  ``fluorescence``: the nuclear signal scaled by a jittered version of the image's intensity
  range (what a slide-level range from a thumbnail gives), gamma, blur and noise, inverted;
  ``synthetic_he``: a fluorescence image rendered as H&E tissue from its signal and labels
  (:func:`nucscale.train._stain.fluorescence_as_he`), then as ``brightfield``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hed2rgb, rgb2hed

from nucscale.models._unet_input import fluorescence_input, nuclear_signal
from nucscale.train._stain import add_eosin, fluorescence_as_he, pale_nuclei

KINDS = ("brightfield", "fluorescence", "synthetic_he")


def crop_scaled(
    image: np.ndarray,
    labels: np.ndarray,
    patch: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.8, 1.25),
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``patch`` x ``patch`` crop at a random scale (image uint8, labels int32)."""
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    size = max(8, round(patch / s))
    h, w = labels.shape
    y = int(rng.integers(min(0, h - size), max(0, h - size) + 1))
    x = int(rng.integers(min(0, w - size), max(0, w - size) + 1))
    bg = labels[::4, ::4] == 0  # the background colour from every 16th pixel is plenty
    fill = np.median(image[::4, ::4][bg], axis=0) if bg.any() else np.zeros(3)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = fill.astype(np.uint8)
    lab = np.zeros((size, size), np.int32)
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + size, h), min(x + size, w)
    img[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    lab[y0 - y : y1 - y, x0 - x : x1 - x] = labels[y0:y1, x0:x1]
    if size != patch:  # Pillow: ~10x faster than skimage.transform.resize here
        img = np.asarray(Image.fromarray(img).resize((patch, patch), Image.Resampling.BILINEAR))
        lab = np.asarray(
            Image.fromarray(lab).resize((patch, patch), Image.Resampling.NEAREST), np.int32
        )
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

    ``a ~ U(1 ± 4 amount)`` (haematoxylin ``U(0.7, 1.8)``, eosin ``U(0.5, 1.8)``: slides
    differ most in their stain strengths),
    ``b ~ U(± amount / 10)``: scikit-image's HED values are optical densities divided by
    ``-log(1e-6)`` (background ~0.01, dense nuclei ~0.2), so the shift moves a typical
    background by ~10 grey levels, not more.
    """
    hed = rgb2hed(image)
    alpha = rng.uniform(1 - amount * 4, 1 + amount * 4, 3)
    alpha[0] = rng.uniform(0.7, 1.8)  # haematoxylin: slides differ in strength too
    alpha[1] = rng.uniform(0.5, 1.8)
    beta = rng.uniform(-amount, amount, 3) * 0.1
    out = hed2rgb(hed * alpha + beta)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def _blur(x: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    """Slight defocus (sigma 0.3-1.2 px) with probability ``p``."""
    if rng.random() >= p:
        return x
    sigma = rng.uniform(0.3, 1.2)
    return ndi.gaussian_filter(x, (sigma, sigma, 0)[: x.ndim], mode="nearest")


def brightfield(
    image: np.ndarray,
    rng: np.random.Generator,
    eosin_p: float = 0.5,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: an H&E patch with stain, blur and exposure jitter; with
    probability ``eosin_p`` procedural tissue added around its ``labels``' nuclei first, and
    (given labels) sometimes its nuclei made paler."""
    if labels is not None and rng.random() < 0.4:
        image = pale_nuclei(image, labels, rng)
    if rng.random() < eosin_p:
        image = add_eosin(image, rng, labels=labels)
    if rng.random() < 0.8:
        image = hed_jitter(image, rng)
    x = _blur(image.astype(np.float32) / 255.0, rng)
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.06, 0.06)  # contrast, brightness
    x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-0.2, 0.2))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _fluorescence_signal(
    image: np.ndarray, calibration: Mapping[str, float], rng: np.random.Generator
) -> np.ndarray:
    """Nuclear signal in [0, 1] (nuclei bright) from a jittered intensity range, with gamma."""
    low, high = float(calibration["low"]), float(calibration["high"])
    span = high - low
    low_j = low + rng.uniform(-0.05, 0.1) * span
    high_j = low + span * float(np.exp(rng.uniform(np.log(0.6), np.log(1.5))))
    s = 1.0 - fluorescence_input(nuclear_signal(image), low_j, max(high_j, low_j + 1.0))
    return np.clip(s, 0.0, 1.0) ** np.exp(rng.uniform(-0.4, 0.4))


def fluorescence(
    image: np.ndarray, calibration: Mapping[str, float], rng: np.random.Generator
) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: the canonical (inverted grey) look of a fluorescence patch."""
    s = _blur(_fluorescence_signal(image, calibration, rng), rng)
    if rng.random() < 0.3:
        s = s + rng.normal(0.0, rng.uniform(0.005, 0.04), s.shape)
    x = 1.0 - np.clip(s, 0.0, 1.0)
    return np.repeat(x[..., None], 3, axis=-1).astype(np.float32)


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    kind: str,
    patch: int,
    rng: np.random.Generator,
    *,
    calibration: Mapping[str, float] | None = None,
    scale: tuple[float, float] = (0.8, 1.25),
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (patch, patch, 3) float32 network input and its (patch, patch) labels.

    ``kind`` is one of :data:`KINDS`; fluorescence and synthetic H&E need the image's
    ``calibration`` (``{"low", "high"}``, :func:`nucscale.models._unet_input.intensity_range`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    img, lab = crop_scaled(image, labels, patch, rng, scale)
    img, lab = flip_rotate(img, lab, rng)
    if kind == "brightfield":
        return brightfield(img, rng, labels=lab), lab
    if calibration is None:
        raise ValueError(f"{kind} augmentation needs the image's intensity range")
    if kind == "fluorescence":
        return fluorescence(img, calibration, rng), lab
    he = fluorescence_as_he(_fluorescence_signal(img, calibration, rng), rng, labels=lab)
    return brightfield(he, rng, eosin_p=0.0), lab
