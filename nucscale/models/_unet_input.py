"""The U-Net's input transform: one canonical look for brightfield and fluorescence.

The network sees nuclei *dark on a bright background* in both modalities:

- brightfield (H&E): ``rgb / 255`` as it is, colour kept (haematoxylin purple against eosin
  pink is what tells a nucleus from a collagen fibre);
- fluorescence: the nuclear signal (brightest channel of the RGB the reader gives), scaled by
  the *slide's* intensity range to [0, 1], inverted, and repeated to three grey channels.

The intensity range (:func:`intensity_range`: 1st and 99.8th percentiles of the nuclear signal
over the slide's low-resolution image) is computed once per slide in the plan and handed to
every tile (DESIGN invariant 1); a per-tile or per-patch statistic would make a nucleus depend
on which tile it is in. A dim 10-bit camera image and a bright one then look alike to the
network, which is why no brightness augmentation has to teach it that.

Keys: ``NORMALISATION`` names this transform in the weights file; ``"rgb/255"`` is the earlier
one (every modality as RGB / 255), still read for old weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nucscale.errors import SegmenterError

NORMALISATION = "canonical/v2"
LEGACY_NORMALISATION = "rgb/255"
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
#: Smallest intensity range (grey levels of 255): a nearly blank image is not stretched into
#: noise.
MIN_RANGE = 12.0


def nuclear_signal(rgb: np.ndarray) -> np.ndarray:
    """The fluorescence nuclear signal of (..., 3) RGB: its brightest channel, float32."""
    return rgb.max(axis=-1).astype(np.float32)


def intensity_range(rgb: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """``{"low", "high"}`` of a fluorescence image's nuclear signal (every pixel counts: the
    background sets ``low``; ``mask`` is accepted for the calibration contract, not used)."""
    g = nuclear_signal(rgb)
    low, high = (float(v) for v in np.percentile(g, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    return {"low": low, "high": max(high, low + MIN_RANGE)}


def fluorescence_input(grey: np.ndarray, low: float, high: float) -> np.ndarray:
    """Inverted, range-scaled nuclear signal in [0, 1] (nuclei dark), float32."""
    x = (grey.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-6))
    return 1.0 - np.clip(x, 0.0, 1.0)


def network_input(
    patches: np.ndarray, modality: str, calibration: Mapping[str, Any] | None
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W, 3) float32 in [0, 1] in the canonical look.

    Fluorescence needs the slide's ``calibration`` (:func:`intensity_range`): a range taken
    from the patches themselves would differ between tiles, so its absence is an error.
    """
    if modality != "fluorescence":
        return patches.astype(np.float32) / np.float32(255.0)
    if not calibration or "low" not in calibration or "high" not in calibration:
        raise SegmenterError(
            "unet: fluorescence input needs the slide's intensity range (calibration 'low', "
            "'high'); compute it once per slide with UNetModel.calibrate"
        )
    x = fluorescence_input(
        nuclear_signal(patches), float(calibration["low"]), float(calibration["high"])
    )
    return np.repeat(x[..., None], 3, axis=-1)
