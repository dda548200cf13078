"""Mammogram preprocessing as the CBIS-DDSM U-Net method does it, each step a pure function.

``preprocess`` chains them: pixels to [0, 1] (VOI LUT or window where the file has one, else its
stored bit range; MONOCHROME1 inverted), a thin border cropped (scanner edges), everything but
the breast removed (labels, markers and film artefacts lie outside its largest bright
component), the breast turned to the left (by laterality, else by where its mass lies), CLAHE,
padded to a square and resized for the network. The geometry (crop, flip, pad, scale) is kept
in a :class:`Geometry` and :func:`apply_geometry` puts a mask through the same steps, so an
image and its label stay aligned; :func:`invert_geometry` brings a network's mask back to the
mammogram's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import exposure, filters, measure, transform

#: Fraction of each side cut as scanner border (CBIS-DDSM film scans carry bright/dark edges).
BORDER = 0.01


@dataclass(frozen=True)
class Geometry:
    """Where a preprocessed image's pixels come from in the original mammogram."""

    shape: tuple[int, int]  # the original image's rows, columns
    box: tuple[int, int, int, int]  # kept after border cropping: top, bottom, left, right
    flipped: bool  # mirrored left-right so the breast lies on the left
    side: int  # the square's side after padding (bottom and right)
    size: int  # the network's side after resizing


def to_unit(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Stored values to float32 in [0, 1], bright = dense tissue.

    ``window`` (centre, width) wins where the file defines one (or its VOI LUT has been applied
    by :func:`pydicom.pixels.apply_voi_lut` first); otherwise the full stored range
    ``0 .. 2**bits_stored - 1``, or the image's own range when the bit depth is not given.
    MONOCHROME1 (bright = low values) is inverted."""
    values = np.asarray(pixels, dtype=np.float32)
    if window is not None:
        centre, width = window
        low, high = centre - width / 2, centre + width / 2
    elif bits_stored:
        low, high = 0.0, float(2**bits_stored - 1)
    else:
        low, high = float(values.min()), float(values.max())
    out = np.clip((values - low) / max(high - low, 1e-6), 0, 1)
    return 1 - out if photometric == "MONOCHROME1" else out


def crop_border(
    image: np.ndarray, fraction: float = BORDER
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image without ``fraction`` of each side; the box kept (top, bottom, left, right)."""
    h, w = image.shape
    dy, dx = round(h * fraction), round(w * fraction)
    box = (dy, h - dy, dx, w - dx)
    return image[box[0] : box[1], box[2] : box[3]], box


def breast_mask(image: np.ndarray) -> np.ndarray:
    """The breast: the largest connected component above half of Otsu's threshold (on a
    subsample: the skin line and fatty periphery are dimmer than Otsu's split), holes filled,
    brought back to full size smoothly. Labels and markers are separate, smaller components."""
    step = max(1, min(image.shape) // 512)
    small = image[::step, ::step]
    labels, n = ndi.label(small > 0.5 * filters.threshold_otsu(small))
    if n == 0:
        return np.zeros(image.shape, bool)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    coarse = ndi.binary_fill_holes(labels == largest).astype(np.float32)
    full = transform.resize(coarse, image.shape, order=1, anti_aliasing=False)
    return np.asarray(full > 0.5)


def remove_artefacts(image: np.ndarray, breast: np.ndarray) -> np.ndarray:
    """Everything outside the breast set to 0 (burnt-in labels, markers, film edges)."""
    return np.where(breast, image, 0).astype(image.dtype)


def breast_on_right(breast: np.ndarray) -> bool:
    """Whether most of the breast lies in the right half of the image."""
    cols = breast.sum(axis=0)
    half = breast.shape[1] // 2
    return bool(cols[half:].sum() > cols[:half].sum())


def orientation(laterality: str | None, breast: np.ndarray) -> tuple[bool, str]:
    """Whether to mirror the image so the breast lies on the left, and why.

    By laterality (a right breast is displayed with its chest wall on the right, so R is
    mirrored), else by content (where most of the breast lies). Where the two disagree (an
    image stored mirrored), content wins and the reason says so."""
    by_content = breast_on_right(breast)
    side = (laterality or "").strip().upper()[:1]
    if side not in ("L", "R"):
        return by_content, "by content (no laterality)"
    if (side == "R") != by_content:
        where = "right" if by_content else "left"
        return by_content, f"by content: laterality {side} but the breast lies on the {where}"
    return by_content, f"by laterality {side}"


def clahe(image: np.ndarray, clip: float = 0.01, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (scikit-image), float32 in [0, 1]."""
    kernel = max(8, min(image.shape) // tiles)
    return exposure.equalize_adapthist(image, kernel_size=kernel, clip_limit=clip).astype(
        np.float32
    )


def pad_square(image: np.ndarray) -> np.ndarray:
    """Padded with 0 at the bottom and right to a square."""
    side = max(image.shape)
    out = np.zeros((side, side), dtype=image.dtype)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def resize(image: np.ndarray, size: int, *, mask: bool = False) -> np.ndarray:
    """To ``size`` x ``size``: area-averaged for an image, nearest neighbour for a mask."""
    if mask:
        return transform.resize(image, (size, size), order=0, preserve_range=True,
                                 anti_aliasing=False).astype(image.dtype)  # fmt: skip
    return transform.resize(image, (size, size), order=1, preserve_range=True,
                            anti_aliasing=True).astype(np.float32)  # fmt: skip


@dataclass(frozen=True)
class Prepared:
    """A preprocessed mammogram: the network's square input, the full-resolution enhanced
    image (cropped, cleaned, oriented, CLAHE; before padding), the geometry and the
    orientation's reason."""

    network: np.ndarray
    enhanced: np.ndarray
    geometry: Geometry
    oriented: str


def preprocess(
    pixels: np.ndarray,
    *,
    size: int,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    laterality: str | None = None,
) -> Prepared:
    """Every step of the method on one mammogram (see the module's docstring)."""
    unit = to_unit(pixels, photometric=photometric, bits_stored=bits_stored, window=window)
    cropped, box = crop_border(unit)
    breast = breast_mask(cropped)
    clean = remove_artefacts(cropped, breast)
    flipped, oriented = orientation(laterality, breast)
    if flipped:
        clean = clean[:, ::-1]
        breast = breast[:, ::-1]
    enhanced = np.where(breast, clahe(clean), 0).astype(np.float32)
    square = pad_square(enhanced)
    shape = (int(unit.shape[0]), int(unit.shape[1]))
    geometry = Geometry(shape, box, flipped, square.shape[0], size)
    return Prepared(resize(square, size), enhanced, geometry, oriented)


def crop_and_orient(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A mask of the original mammogram in the enhanced image's frame (crop, flip)."""
    top, bottom, left, right = geometry.box
    m = np.asarray(mask)[top:bottom, left:right]
    return m[:, ::-1] if geometry.flipped else m


def apply_geometry(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A mask of the original mammogram through the same crop, flip, pad and resize."""
    return resize(pad_square(crop_and_orient(mask, geometry)), geometry.size, mask=True)


def invert_geometry(image: np.ndarray, geometry: Geometry, order: int = 0) -> np.ndarray:
    """A network-sized map back on the original mammogram's pixels: nearest neighbour for a
    mask (``order=0``), bilinear for a probability map (``order=1``, so a mask thresholded
    afterwards has smooth outlines instead of the network's pixel steps)."""
    side = (geometry.side, geometry.side)
    square = transform.resize(image, side, order=order, preserve_range=True, anti_aliasing=False)
    square = square.astype(image.dtype)
    top, bottom, left, right = geometry.box
    m = square[: bottom - top, : right - left]
    if geometry.flipped:
        m = m[:, ::-1]
    out = np.zeros(geometry.shape, dtype=image.dtype)
    out[top:bottom, left:right] = m
    return out


def regions(
    mask: np.ndarray, intensity: np.ndarray, spacing_mm: float | None
) -> list[dict[str, float]]:
    """One row per connected region of a binary mask: area (px and mm² when the spacing is
    known), bounding box, centroid, maximum Feret diameter, mean intensity."""
    labels = measure.label(mask > 0)
    unit = spacing_mm or float("nan")
    rows = []
    for p in measure.regionprops(labels, intensity_image=intensity):
        y0, x0, y1, x1 = p.bbox
        rows.append(
            {
                "region": int(p.label),
                "area_px": float(p.area),
                "area_mm2": float(p.area) * unit * unit,
                "bbox_y0": y0, "bbox_x0": x0, "bbox_y1": y1, "bbox_x1": x1,
                "centroid_y": float(p.centroid[0]),
                "centroid_x": float(p.centroid[1]),
                "max_diameter_px": float(p.feret_diameter_max),
                "max_diameter_mm": float(p.feret_diameter_max) * unit,
                "mean_intensity": float(p.intensity_mean),
            }
        )  # fmt: skip
    return rows
