"""Vendor slides through OpenSlide: Aperio SVS, Hamamatsu NDPI/VMS, 3DHISTECH MRXS, Leica SCN, ...

OpenSlide addresses regions in level-0 coordinates; :class:`OpenSlideSlide` takes level
coordinates (the :class:`~nucscale.io._base.Slide` contract) and multiplies by the level's
downsample. OpenSlide returns non-premultiplied RGBA; transparent pixels (outside the scanned
area) are composited on white. Where a level's downsample is not an integer (4.016 for a
250-px-high slide), the level-0 position is rounded and OpenSlide renders the level with a
sub-pixel shift; results then differ from a pure tile read by a few grey levels at edges.

An OpenSlide handle that hit a decoding error stays in an error state, so after a failed read
the handle is dropped and reopened on the next read: one corrupt tile does not poison the
rest of the slide in a long-lived worker.

DICOM is never sent here: OpenSlide 4.0.1 shows false colours on YCbCr frames labelled RGB
(see :mod:`nucscale.io._dicom`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._base import Level, Slide
from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.io._plain import to_rgb8

log = logging.getLogger(__name__)


class OpenSlideSlide(Slide):
    """A slide read with OpenSlide."""

    backend = "openslide"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        self._lock = threading.Lock()
        self._osr: openslide.OpenSlide | None = self._open()
        osr = self._osr
        props = osr.properties
        self._vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
        self._file_mpp = _mpp(props)
        self._levels = tuple(
            Level(int(w), int(h), float(d))
            for (w, h), d in zip(osr.level_dimensions, osr.level_downsamples, strict=True)
        )
        if not self._levels or self._levels[0].width <= 0 or self._levels[0].height <= 0:
            raise SlideFormatError(self.path, "OpenSlide reports no pixels; check the file")

    def _open(self) -> openslide.OpenSlide:
        try:
            return openslide.OpenSlide(self.path)
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideFormatError(
                self.path, "OpenSlide does not recognise this file (truncated or not a slide?)"
            ) from exc
        except openslide.OpenSlideError as exc:
            raise SlideFormatError(self.path, f"OpenSlide cannot open it: {exc}") from exc

    @property
    def properties(self) -> dict[str, str]:
        """All OpenSlide properties (vendor metadata), as strings."""
        with self._lock:
            osr = self._osr if self._osr is not None else self._open()
            return dict(osr.properties)

    def close(self) -> None:
        with self._lock:
            if self._osr is not None:
                self._osr.close()
                self._osr = None

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        ds = self._levels[level].downsample
        location = (round(x * ds), round(y * ds))
        with self._lock:
            if self._osr is None:
                self._osr = self._open()
            osr = self._osr
        try:
            rgba = np.asarray(osr.read_region(location, level, (w, h)))
        except openslide.OpenSlideError as exc:
            with self._lock:
                if self._osr is osr:
                    self._osr = None  # the handle is now in an error state; reopen next time
            raise SlideReadError(
                self.path, f"cannot decode level {level} region at ({x}, {y}) size {w}x{h}: {exc}"
            ) from exc
        return to_rgb8(rgba)


def _mpp(props: Mapping[str, str]) -> float | None:
    values = []
    for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            v = float(props.get(key, "nan"))
        except ValueError:
            continue
        if np.isfinite(v) and v > 0:
            values.append(v)
    return float(np.mean(values)) if values else None
