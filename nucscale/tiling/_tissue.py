"""Tissue detection on a low-resolution image of the slide.

Brightfield: optical density (OD) of glass is near zero and of stained tissue well above it,
whatever the stain, so the mask is ``sum(OD over RGB) > t`` with ``t`` from Otsu's method
clamped to a band that keeps pale stroma, followed by closing, hole filling and removal of specks.

Fluorescence: the background is dark and nuclei bright, so the mask is signal above the
background (:func:`fluorescence_mask`): tiles holding any signal are kept, empty dark field is
not read.
:func:`detect_modality` tells the two apart by the brightness of the background (the median of
the image); ``--tissue`` overrides it, and ``--tissue none`` keeps every tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from nucscale.io import Slide

#: OD-sum threshold band: below 0.12 picks up glass noise and JPEG ringing; above 0.3 loses
#: pale eosin stroma on the CMU-1 slide.
OD_THRESHOLD_RANGE = (0.12, 0.30)
_STRIP_BYTES = 64 * 2**20


def low_res_image(slide: Slide, max_size: int) -> tuple[np.ndarray, float]:
    """A low-resolution RGB image of the whole slide, longest side <= ``max_size``.

    Picks the smallest pyramid level that is still at least ``max_size`` on its longest side,
    and block-averages it the rest of the way, reading in strips so a single-level slide never
    needs its full resolution in memory at once.

    Returns
    -------
    rgb, downsample:
        The image and its downsample factor relative to level 0 (level-0 px per image px).
    """
    level = 0
    for i, lv in enumerate(slide.levels):
        if max(lv.width, lv.height) >= max_size:
            level = i
    lw, lh = slide.level_dimensions[level]
    k = max(1, math.ceil(max(lw, lh) / max_size))
    if k == 1:  # a level of the right size: its pixels as they are (averaging 1 px is a copy)
        return slide.read_region(level, 0, 0, lw, lh), slide.levels[level].downsample
    ow, oh = math.ceil(lw / k), math.ceil(lh / k)
    out = np.empty((oh, ow, 3), np.uint8)
    # rows per strip: ~64 MiB of float32 RGB, a multiple of k (a 100k-px-wide level reads
    # ~56 rows at a time, not 4096)
    strip = max(k, (_STRIP_BYTES // (lw * 12) // k) * k)
    for y in range(0, lh, strip):
        h = min(strip, lh - y)
        region = slide.read_region(level, 0, y, ow * k, math.ceil(h / k) * k).astype(np.float32)
        blocks = region.reshape(region.shape[0] // k, k, ow, k, 3).mean(axis=(1, 3))
        out[y // k : y // k + blocks.shape[0]] = np.round(blocks).astype(np.uint8)
    return out, slide.levels[level].downsample * k


MODALITIES = ("brightfield", "fluorescence")
#: Median grey level below which an image is taken as fluorescence (dark background). Glass in
#: brightfield is above 180; fluorescence background below 60 in the DSB 2018 fields.
FLUORESCENCE_MEDIAN = 100


def detect_modality(rgb: np.ndarray) -> str:
    """``"fluorescence"`` for a dark-background image, else ``"brightfield"``."""
    return "fluorescence" if _median_grey(rgb) < FLUORESCENCE_MEDIAN else "brightfield"


#: Rows of a thumbnail taken at a time by the whole-image reductions below: their temporaries
#: (a few MB) are reused from one band to the next instead of being new memory the size of
#: the image (48 MB of float32 RGB for a 2048² thumbnail). New memory is what costs on this VM
#: (each fresh 2 MiB page can wait on the host: the same lookup over a 2048² thumbnail took
#: 0.04 s in one fresh process and 0.5-0.8 s in others), and the plan that runs them is the
#: one serial step of a slide.
_BAND_ROWS = 128


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The channel mean in float32, as ``rgb.astype(np.float32).mean(axis=-1)`` computes it,
    without the float32 copy of the image: band by band, the channels added one after the
    other (the same sums: integers, exact in float32)."""
    out = np.empty(rgb.shape[:-1], np.float32)
    for y in range(0, rgb.shape[0], _BAND_ROWS):
        band, o = rgb[y : y + _BAND_ROWS], out[y : y + _BAND_ROWS]
        o[...] = band[..., 0]
        for c in range(1, rgb.shape[-1]):
            o += band[..., c]
    out /= np.float32(rgb.shape[-1])
    return out


def _median_grey(rgb: np.ndarray) -> float:
    """``np.median(_grey(rgb))``. An 8-bit RGB image's grey levels are its channel sums over
    3, so the two middle ones come from a histogram of the 766 sums (no image-sized grey
    copy to partition), averaged as numpy's median averages them: 0.10 -> 0.02 s for a 2048²
    thumbnail."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.size == 0:
        return float(np.median(_grey(rgb)))
    counts = np.zeros(766, np.int64)
    for y in range(0, rgb.shape[0], _BAND_ROWS):
        band = rgb[y : y + _BAND_ROWS]
        sums = band[..., 0].astype(np.uint16)
        sums += band[..., 1]
        sums += band[..., 2]
        counts += np.bincount(sums.ravel(), minlength=766)
    n = int(counts.sum())
    order = np.cumsum(counts)
    middle = sorted({(n - 1) // 2, n // 2})  # one value for an odd count, two for an even one
    levels = np.searchsorted(order, np.asarray(middle), side="right")
    values = levels.astype(np.float32) / np.float32(3)
    return float(np.mean(values, dtype=np.float32)) if len(values) == 2 else float(values[0])


def tissue_mask_for(rgb: np.ndarray, modality: str) -> np.ndarray:
    """Tissue mask for a modality: ``brightfield``, ``fluorescence`` (inverted) or ``none``."""
    if modality == "none":
        return np.ones(rgb.shape[:2], bool)
    if modality == "fluorescence":
        return fluorescence_mask(rgb)
    return tissue_mask(rgb)[0]


def fluorescence_mask(rgb: np.ndarray, *, min_object_px: int = 16) -> np.ndarray:
    """Signal above a dark background: grey > median + 1/4 of (Otsu - median), then dilated.

    A quarter of the way from background to Otsu's split keeps dim nuclei (Otsu alone keeps
    only the bright ones); the dilation keeps their rims.
    """
    grey = _grey(rgb)
    med = _median_grey(rgb)
    otsu = float(filters.threshold_otsu(grey)) if np.ptp(grey) > 0 else med
    mask = grey > med + max(2.0, 0.25 * (otsu - med))
    mask = drop_small_objects(mask, min_object_px)
    return dilate_disk(mask, 2)


#: Rows of a label image counted at once (:func:`drop_small_objects`).
_COUNT_ROWS = 256


def drop_small_objects(mask: np.ndarray, min_px: int) -> np.ndarray:
    """``mask`` without its 4-connected components under ``min_px`` pixels, in place: the
    result of scikit-image's ``remove_small_objects(mask, max_size=min_px - 1)``.

    Hand-written for the plan's memory: scikit-image counts component sizes with a bincount of
    the whole label image, which numpy converts to int64 (32 MiB for a 2048² thumbnail, each
    page faulted in afresh in a new worker: 0.3 s of a serial step); here a band of rows at a
    time."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.zeros(n + 1, np.int64)
    for top in range(0, labels.shape[0], _COUNT_ROWS):
        sizes += np.bincount(labels[top : top + _COUNT_ROWS].ravel(), minlength=n + 1)
    small = sizes < min_px
    small[0] = False
    if small.any():
        mask[small[labels]] = False
    return mask


def _od(values: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(values.astype(np.float32), 1.0, 255.0) / 255.0)


#: :func:`optical_density` of each 8-bit level.
_OD_OF_LEVEL = _od(np.arange(256))


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-channel optical density -log10(I / 255), with I clipped to [1, 255] (float32).

    8-bit images take it from a table of the 256 levels, the same float32 values: the clip and
    log of an 8192² slide's thumbnail took up to 0.5 s of its plan (a serial step)."""
    if rgb.dtype == np.uint8:
        return _OD_OF_LEVEL[rgb]
    return _od(rgb)


def _od_sum(rgb: np.ndarray) -> np.ndarray:
    """``optical_density(rgb).sum(axis=-1)``: for 8-bit RGB, band by band
    (:data:`_BAND_ROWS`), each channel's densities looked up and added in channel order (the
    same float32 sums, 4x faster than the whole image's densities summed over their last
    axis, and without them: 48 MB for a 2048² thumbnail)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        return np.asarray(optical_density(rgb).sum(axis=-1))
    out = np.empty(rgb.shape[:2], np.float32)
    for y in range(0, rgb.shape[0], _BAND_ROWS):
        band, o = rgb[y : y + _BAND_ROWS], out[y : y + _BAND_ROWS]
        np.take(_OD_OF_LEVEL, band[..., 0], out=o)
        o += np.take(_OD_OF_LEVEL, band[..., 1])
        o += np.take(_OD_OF_LEVEL, band[..., 2])
    return out


def tissue_mask(rgb: np.ndarray, *, min_object_px: int = 64) -> tuple[np.ndarray, float]:
    """Boolean tissue mask of a low-resolution RGB image, and the OD threshold used."""
    od = _od_sum(rgb)
    lo, hi = OD_THRESHOLD_RANGE
    t = float(filters.threshold_otsu(od)) if np.ptp(od) > 0 else hi
    t = min(max(t, lo), hi)
    mask = od > t
    mask = close_disk(mask, 2)
    mask = drop_small_objects(np.asarray(ndi.binary_fill_holes(mask)), min_object_px)
    return np.asarray(mask, dtype=bool), t


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """``ndi.binary_dilation(mask, morphology.disk(radius))`` (outside the image is
    background), computed row by row of the disk: the disk's row at offset ``dy`` is a run of
    ``2 * isqrt(r² - dy²) + 1`` pixels, so the dilation is the union, over ``dy``, of the mask
    grown along its rows by that half-width (one 1-D maximum filter per distinct half-width)
    and shifted by ``dy`` rows.

    Hand-written for the plan's time (a serial step of every slide, while the other workers
    wait): scipy visits every offset of the footprint (~250 for radius 9) at each pixel near an
    edge. The 4096² CMU-1 mosaic's 2048² thumbnail mask, radius 9: 0.315 s with scipy, 0.038 s
    here (radius 5 on the 8192² one: 0.103 / 0.021 s); the same pixels (``tests/tiling``).
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    height = mask.shape[0]
    out = np.zeros_like(mask)
    # the half-width shrinks as |dy| grows: one grown mask held at a time, for dy and -dy
    grown, grown_half = mask, -1
    for dy in range(min(radius, height - 1) + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half != grown_half:
            rows = ndi.maximum_filter1d(mask.view(np.uint8), 2 * half + 1, axis=1, mode="constant")
            grown, grown_half = rows.view(bool), half
        out[: height - dy] |= grown[dy:]  # out[y] |= grown[y + dy]
        if dy:
            out[dy:] |= grown[: height - dy]  # and grown[y - dy]
    return out


def close_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """``morphology.closing(mask, morphology.disk(radius))`` of a boolean mask (outside the
    image is background for the dilation, foreground for the erosion, as scikit-image pads):
    :func:`dilate_disk`, then the erosion as the complement's dilation."""
    return ~dilate_disk(~dilate_disk(mask, radius), radius)


def tissue_area_mm2(mask: np.ndarray, downsample: float, mpp: float) -> float:
    """Area of ``mask`` in mm², given its downsample from level 0 and level-0 µm/px."""
    side_um = downsample * mpp
    return float(mask.sum()) * side_um * side_um / 1e6


#: How far outside the detected tissue a nucleus's centroid may lie and still be kept, µm: a
#: nucleus diameter, for pale nuclei at the tissue's edge and dim ones beside a fluorescence
#: signal, while debris on open glass stays out.
KEEP_MARGIN_UM = 8.0


def keep_region(
    mask: np.ndarray, um_per_px: float, margin_um: float = KEEP_MARGIN_UM
) -> np.ndarray:
    """``mask`` (tissue on the slide's thumbnail, ``um_per_px`` µm per mask pixel) grown by
    ``margin_um``: where a nucleus's centroid must lie to be kept."""
    radius = math.ceil(margin_um / um_per_px)
    if radius <= 0 or not mask.any():
        return mask
    return dilate_disk(mask, radius)


@dataclass(frozen=True, eq=False)
class TissueMap:
    """The slide's tissue mask on its fixed low-resolution grid, and the rule that keeps a
    nucleus: its centroid lies in a tissue cell.

    The mask comes from the whole-slide thumbnail (its size depends on the slide, never on the
    tile size), so the same nucleus gets the same verdict whichever tile owns it: tiled output
    equals whole-image output with tissue detection on. ``scale`` is analysis pixels per mask
    pixel.
    """

    mask: np.ndarray
    scale: float

    def contains(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Whether each centroid (global analysis pixel indices, pixel centres at integers)
        lies in a tissue cell. A centroid beyond the mask's last cell takes that cell."""
        mh, mw = self.mask.shape
        col = np.clip(np.floor((np.asarray(cx) + 0.5) / self.scale).astype(np.int64), 0, mw - 1)
        row = np.clip(np.floor((np.asarray(cy) + 0.5) / self.scale).astype(np.int64), 0, mh - 1)
        return np.asarray(self.mask[row, col], dtype=bool)

    def touches(self, x0: int, y0: int, x1: int, y1: int, grow: int) -> bool:
        """Whether the box [x0, x1) x [y0, y1) of analysis pixels, grown by ``grow`` px on
        each side, overlaps a tissue cell (outward rounding: a fraction of a cell counts)."""
        mh, mw = self.mask.shape
        cx0, cy0 = (
            max(0, math.floor((x0 - grow) / self.scale)),
            max(0, math.floor((y0 - grow) / self.scale)),
        )
        cx1 = min(mw, math.ceil((x1 + grow) / self.scale) + 1)
        cy1 = min(mh, math.ceil((y1 + grow) / self.scale) + 1)
        return bool(self.mask[cy0:cy1, cx0:cx1].any())
