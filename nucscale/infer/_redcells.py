"""A weights-free segmenter of red blood cells in a stained blood smear (``--model redcells``).

The baseline's chain (:mod:`nucscale.infer._baseline`: smoothed signal, slide-level Otsu
threshold, clumps, holes filled, distance-map watershed, size rules in µm) on another signal
and with other sizes:

1. signal: optical density of the green channel, ``-log10((G + 1) / 256)``: haemoglobin and
   eosin absorb green, so a red cell is dense and the glass between cells is not;
2. threshold: Otsu of that density over the smear's whole thumbnail (glass and cells), times
   1.0, within 0.04-0.5;
3. the central pallor of a discocyte is a hole in its mask when paler than the threshold:
   filled, as the baseline fills a nucleus's own holes;
4. touching cells are split at the h-maxima of the smoothed distance map (h = 1 µm): a peak
   that stands less than 1 µm above the saddle to a higher one is not a cell of its own, so a
   long sickle cell's ridge stays one cell while two discs touching at a narrow neck split;
5. a cell has at least 10 µm² (platelets and debris are smaller) and a bounding box of at most
   18 µm (a long sickle cell is 12-16 µm); clumps wider than 40 µm (rouleaux, the thick end
   of the smear) are dropped whole.

It works at 0.25 µm/px unless told otherwise (``--analysis-mpp``): smears are imaged with
oil objectives at 0.1-0.25 µm/px, and a sickle cell's 2-3 µm width needs the pixels.
Tiled output equals whole-image output for the same reason as the baseline's: every step is
bounded by the clump cap (``context``), see :class:`~nucscale.infer._baseline.BaselineSegmenter`.
Written for and measured on synthetic smears only (:mod:`nucscale.smear`): no labelled real
blood smear exists here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nucscale.contracts import Calibration
from nucscale.errors import SegmenterError
from nucscale.infer._baseline import BaselineSegmenter, _split_clump


def green_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density of the green channel of an RGB uint8 image, float64."""
    return np.asarray(-np.log10((rgb[..., 1].astype(np.float64) + 1.0) / 256.0))


class RedCellSegmenter(BaselineSegmenter):
    """Red blood cells of a stained smear: green-channel density, Otsu, h-maxima watershed.

    Parameters are those of :class:`BaselineSegmenter` with red-cell defaults, plus
    ``h_um``: how far (µm of distance-map depth) a peak must rise above its saddle to seed a
    cell of its own.
    """

    name = "redcells"
    type_names: Mapping[int, str] = {1: "red cell"}
    native_mpp: float | None = 0.25
    default_threshold = 0.12
    threshold_range = (0.04, 0.5)
    otsu_factor = 1.0
    signal_clip = 1.5

    def __init__(
        self,
        *,
        mpp: float = 0.25,
        min_area_um2: float = 10.0,
        max_diameter_um: float = 18.0,
        max_clump_um: float = 40.0,
        h_um: float = 1.0,
    ) -> None:
        super().__init__(
            mpp=mpp,
            min_area_um2=min_area_um2,
            max_diameter_um=max_diameter_um,
            max_clump_um=max_clump_um,
        )
        if not (np.isfinite(h_um) and h_um > 0):
            raise SegmenterError(f"redcells: h_um must be a positive number, got {h_um}")
        self.params = {**self.params, "h_um": h_um}
        self._h = h_um / mpp

    def calibrate(self, tissue_rgb: np.ndarray, tissue_mask: np.ndarray) -> Calibration:
        """Otsu of the green density over the whole thumbnail, glass included: the cells stand
        against the glass, which is what the threshold separates (within the cells alone,
        Otsu would split the dense rim from the pale centre)."""
        return super().calibrate(tissue_rgb, np.ones(tissue_rgb.shape[:2], dtype=bool))

    def signal(self, rgb: np.ndarray) -> np.ndarray:
        return green_density(rgb)

    def split(self, mask: np.ndarray, fg: np.ndarray) -> np.ndarray:
        return _split_clump(mask, fg, self._px, h=self._h)
