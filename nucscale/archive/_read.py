"""A mammogram's pixels and the header facts its preprocessing needs (pydicom)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from nucscale.archive._headers import pixel_spacing


@dataclass(frozen=True)
class Mammogram:
    """Pixels after the file's VOI LUT (where it has a LUT sequence), and how to read them."""

    pixels: np.ndarray
    photometric: str
    bits_stored: int | None  # None once a VOI LUT has mapped the values to its own range
    window: tuple[float, float] | None  # (centre, width) of the first VOI window, if any
    laterality: str | None
    spacing_mm: float | None


def read_mammogram(path: str | Path) -> Mammogram:
    """Decode one single-frame greyscale DICOM image."""
    ds = pydicom.dcmread(path)
    pixels = np.asarray(ds.pixel_array)
    bits = int(ds.get("BitsStored") or 0) or None
    window = None
    slope, intercept = (
        float(ds.get("RescaleSlope", 1) or 1),
        float(ds.get("RescaleIntercept", 0) or 0),
    )
    if (slope, intercept) != (1.0, 0.0):
        pixels = np.asarray(apply_modality_lut(pixels, ds))
        bits = None
    if "VOILUTSequence" in ds:
        pixels = np.asarray(apply_voi_lut(pixels, ds))
        bits = None
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = ds.WindowCenter, ds.WindowWidth
        first = (
            (centre[0], width[0])
            if isinstance(centre, pydicom.multival.MultiValue)
            else (centre, width)
        )
        window = (float(first[0]), float(first[1]))
    laterality = ds.get("ImageLaterality") or ds.get("Laterality") or None
    return Mammogram(
        pixels=pixels,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        bits_stored=bits,
        window=window,
        laterality=str(laterality) if laterality else None,
        spacing_mm=pixel_spacing(ds)[0],
    )
