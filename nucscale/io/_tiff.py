"""TIFF slides through tifffile: pyramidal tiled TIFF (pages or SubIFDs), OME-TIFF, flat TIFF.

Regions are read lazily through ``series.aszarr(level=i)`` opened with zarr, so only the tiles
(or strips) a region touches are decoded. Samples become RGB uint8 with
:func:`~nucscale.io._plain.to_rgb8`: greyscale is repeated, alpha composited on white, and
16-bit data scaled by its dtype range (65535 -> 255; 12-bit data stored in 16 bits comes out
dark, by design: the mapping does not depend on the image content).

Pixel size: OME ``PhysicalSizeX/Y`` (with units) first, then the TIFF resolution tags, accepted
only with a centimetre or inch unit and a result between 0.01 and 50 µm/px (a 72-dpi default
is not a pixel size).

Multi-channel fluorescence (OME ``CYX`` stacks, or minisblack pages with several samples that
are not grey + alpha) is read as its first channel, the nuclear stain by convention, in grey.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._base import Level, Slide
from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.io._plain import plausible_mpp, to_rgb8

log = logging.getLogger(__name__)

_UNIT_TO_UM = {
    "pm": 1e-6,
    "nm": 1e-3,
    "µm": 1.0,
    "μm": 1.0,  # GREEK SMALL LETTER MU, which some writers use
    "um": 1.0,
    "micron": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "Å": 1e-4,
}
_ASSOCIATED = ("label", "macro", "thumbnail", "overview")
_EXTRA_AXES_OK = set("TZQIRLHEVPAMB")  # any non-spatial axis is read at index 0


class TiffSlide(Slide):
    """A TIFF read with tifffile; every level is a lazily decoded zarr view."""

    backend = "tifffile"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
            raise SlideFormatError(self.path, f"not a readable TIFF ({exc})") from exc
        self._vendor = "ome-tiff" if self._tif.is_ome else "tiff"
        try:
            self._series_index, series = self._pick_series()
            # Levels shrunk to nothing (a 1-px pyramid top written as 0 px) are dropped.
            valid = [min(_yx(lv)) > 0 for lv in series.levels]
            self._series = series.levels[: valid.index(False) if False in valid else len(valid)]
            self._axes = [lv.axes for lv in self._series]
            self._levels = self._make_levels()
            self._check_decodable()
            self._nuclear_only = self._is_multichannel_fluorescence()
            self._file_mpp = self._ome_mpp() or self._tag_mpp()
        except Exception:
            self._tif.close()
            raise
        self._arrays: dict[int, Any] = {}
        self._lock = threading.Lock()

    # -- metadata -----------------------------------------------------------------------------

    def close(self) -> None:
        self._tif.close()

    def _pick_series(self) -> tuple[int, tifffile.TiffPageSeries]:
        candidates = [
            (i, s)
            for i, s in enumerate(self._tif.series)
            if not any(k in (s.name or "").lower() for k in _ASSOCIATED) and "Y" in s.axes
        ]
        if not candidates:
            raise SlideFormatError(
                self.path, "TIFF holds no image (truncated or corrupt file?); check the file"
            )
        return max(candidates, key=lambda item: _yx(item[1])[0] * _yx(item[1])[1])

    def _make_levels(self) -> tuple[Level, ...]:
        sizes = [_yx(s) for s in self._series]
        if not sizes:
            raise SlideFormatError(self.path, "TIFF image has no pixels; check the file")
        h0, w0 = sizes[0]
        for axes in self._axes:
            extra = set(axes) - set("YXSC")
            if not extra <= _EXTRA_AXES_OK:
                raise SlideFormatError(self.path, f"TIFF axes {axes!r} are not an image")
        return tuple(Level(w, h, (w0 / w + h0 / h) / 2) for h, w in sizes)

    def _check_decodable(self) -> None:
        for s in self._series:
            page = s.keyframe
            if page.compression not in tifffile.TIFF.DECOMPRESSORS:
                raise SlideFormatError(
                    self.path,
                    f"TIFF compression {int(page.compression)} is not supported, "
                    "so this is not a slide nucscale can read; convert it to a standard TIFF",
                )
            if page.dtype is None or page.dtype.kind not in "uifb":
                raise SlideFormatError(self.path, f"TIFF sample type {page.dtype} not supported")

    def _is_multichannel_fluorescence(self) -> bool:
        """Several channels that are not RGB(A): a fluorescence stack (OME ``CYX``, or
        multi-sample minisblack). Only its first channel, by convention the nuclear stain
        (DAPI / Hoechst), is read, as grey; reading four channels as RGBA would be wrong."""
        page = self._series[0].keyframe
        axes, shape = self._axes[0], self._series[0].shape
        channels = next((n for ax, n in zip(axes, shape, strict=True) if ax in "SC"), 1)
        if channels < 2:
            return False
        photometric = int(page.photometric)
        if photometric not in (0, 1):  # MINISWHITE / MINISBLACK: else RGB, YCbCr, palette...
            return False
        alpha = channels == 2 and any(int(e) in (1, 2) for e in (page.extrasamples or ()))
        if not alpha:
            log.info("%s: %d fluorescence channels; reading channel 0", self.path, channels)
        return not alpha

    def _ome_mpp(self) -> float | None:
        if not self._tif.is_ome or not self._tif.ome_metadata:
            return None
        try:
            root = ET.fromstring(self._tif.ome_metadata)
        except ET.ParseError:
            log.warning("%s: OME-XML does not parse; ignoring its pixel size", self.path)
            return None
        images = [el for el in root.iter() if el.tag.endswith("}Image") or el.tag == "Image"]
        image = images[self._series_index] if self._series_index < len(images) else None
        pixels = None
        for el in image.iter() if image is not None else root.iter():
            if el.tag.endswith("}Pixels") or el.tag == "Pixels":
                pixels = el
                break
        if pixels is None:
            return None
        sizes = [
            _ome_size(pixels.get(f"PhysicalSize{a}"), pixels.get(f"PhysicalSize{a}Unit", "µm"))
            for a in "XY"
        ]
        known = [s for s in sizes if s is not None]
        return plausible_mpp(float(np.mean(known))) if known else None

    def _tag_mpp(self) -> float | None:
        return resolution_mpp(self._series[0].keyframe)

    # -- pixels -------------------------------------------------------------------------------
    def _array(self, level: int) -> Any:
        with self._lock:
            arr = self._arrays.get(level)
            if arr is None:
                store = self._tif.series[self._series_index].aszarr(level=level)
                arr = zarr.open_array(store=store, mode="r")
                self._arrays[level] = arr
            return arr

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        axes = self._axes[level]
        index: list[slice | int] = []
        channel_axis_seen = False
        for ax in axes:
            if ax == "Y":
                index.append(slice(y, y + h))
            elif ax == "X":
                index.append(slice(x, x + w))
            elif ax in "SC" and not channel_axis_seen:
                index.append(slice(None))
                channel_axis_seen = True
            else:
                index.append(0)
        try:
            region = np.asarray(self._array(level)[tuple(index)])
        except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
            raise SlideReadError(
                self.path, f"cannot decode level {level} region at ({x}, {y}): {exc}"
            ) from exc
        kept = [ax for ax, i in zip(axes, index, strict=True) if not isinstance(i, int)]
        # Put the region in (y, x, channel) order whatever the file's order (planar, OME CYX).
        order = [kept.index("Y"), kept.index("X")] + [
            i for i, ax in enumerate(kept) if ax not in "YX"
        ]
        region = np.transpose(region, order)
        if self._nuclear_only and region.ndim == 3:
            region = region[:, :, 0]
        try:
            return to_rgb8(region)
        except ValueError as exc:
            raise SlideReadError(self.path, f"cannot convert samples to RGB: {exc}") from exc


def resolution_mpp(page: Any) -> float | None:
    """µm/px from a TIFF page's resolution tags: centimetre or inch unit and plausible only."""
    try:
        unit = int(page.resolutionunit)
        rx, ry = page.resolution
    except (AttributeError, TypeError, ValueError):
        return None
    per_unit = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre -> µm
    if per_unit is None or not rx or not ry or rx <= 0 or ry <= 0:
        return None
    return plausible_mpp((per_unit / rx + per_unit / ry) / 2)


def _ome_size(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    try:
        size = float(value)
    except ValueError:
        return None
    factor = _UNIT_TO_UM.get((unit or "µm").strip())
    if factor is None or size <= 0:
        log.warning("OME PhysicalSize unit %r not understood; ignoring it", unit)
        return None
    return size * factor


def _yx(series: Any) -> tuple[int, int]:
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        return 0, 0
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
