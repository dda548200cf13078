"""TIFF slides through tifffile: pyramidal tiled TIFF (pages or SubIFDs), OME-TIFF, flat TIFF.

Regions are read lazily through ``series.aszarr(level=i)`` opened with zarr, so only the tiles
(or strips) a region touches are decoded. Samples become RGB uint8 with
:func:`~nucscale.io._plain.to_rgb8`: greyscale is repeated, alpha composited on white.
Samples of more than 8 bits (and floats) go through one intensity window per slide
(:mod:`nucscale.io._intensity`: 0 to the top of the bit depth the values use, from the
lowest-resolution level; ``--intensity-range`` overrides), fixed when the slide is opened.

Pixel size: OME ``PhysicalSizeX/Y`` (with units) first, then the TIFF resolution tags, accepted
only with a centimetre or inch unit and a result between 0.01 and 50 µm/px (a 72-dpi default
is not a pixel size).

Multi-channel fluorescence (OME ``CYX`` stacks, or minisblack pages with several samples that
are not grey + alpha) is read as its nuclear channel, in grey, chosen by
:func:`~nucscale.io._channels.choose_nuclear` from the OME ``Channel`` names and wavelengths
(``--channel`` overrides; no names and no choice: refused, never "the first").

Other dimensions: a time axis longer than 1 is refused; a Z stack needs ``--z INDEX`` or
``--z max`` (maximum projection); any other non-spatial axis longer than 1 is refused. Axes of
length 1 are read at index 0.
"""

from __future__ import annotations

import logging
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._base import Level, Slide
from nucscale.io._channels import Channel, choose_nuclear
from nucscale.io._intensity import describe, to_uint8, window_of
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
_EXTRA_AXES_OK = set("TZQIRLHEVPAMB")  # non-spatial axes: read at index 0 when of length 1
#: Bigger lowest levels are subsampled (every k-th pixel) to compute the intensity window.
_WINDOW_SAMPLE_PX = 4_000_000


class TiffSlide(Slide):
    """A TIFF read with tifffile; every level is a lazily decoded zarr view."""

    backend = "tifffile"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        with _tifffile_warnings() as said:
            try:
                self._tif = tifffile.TiffFile(self.path)
            except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as exc:
                raise SlideFormatError(self.path, f"not a readable TIFF ({exc})") from exc
        self._vendor = "ome-tiff" if self._tif.is_ome else "tiff"
        try:
            with _tifffile_warnings(said):
                self._series_index, series = self._pick_series(said)
            # Levels shrunk to nothing (a 1-px pyramid top written as 0 px) are dropped.
            valid = [min(_yx(lv)) > 0 for lv in series.levels]
            self._series = series.levels[: valid.index(False) if False in valid else len(valid)]
            self._axes = [lv.axes for lv in self._series]
            self._levels = self._make_levels()
            self._check_decodable()
            self._arrays: dict[int, Any] = {}
            self._lock = threading.Lock()
            self._pixels_xml = self._ome_pixels()
            self._nuclear_only = self._is_multichannel_fluorescence()
            self._channel: int | None = self._choose_channel() if self._nuclear_only else None
            self._z: int | str | None = self._choose_plane()
            self._file_mpp = self._ome_mpp() or self._tag_mpp()
            self._window: tuple[float, float] | None = None
            self._window = self._intensity_window()
        except Exception:
            self._tif.close()
            raise

    # -- metadata -----------------------------------------------------------------------------

    def close(self) -> None:
        self._tif.close()

    def _pick_series(self, said: list[str]) -> tuple[int, tifffile.TiffPageSeries]:
        """The main image series; ``said``: what tifffile warned about while opening (it
        joins the error when there is no image)."""
        candidates = [
            (i, s)
            for i, s in enumerate(self._tif.series)
            if not any(k in (s.name or "").lower() for k in _ASSOCIATED) and "Y" in s.axes
        ]
        if not candidates:
            why = f"tifffile: {said[0]}; " if said else ""
            raise SlideFormatError(
                self.path, f"TIFF holds no image ({why}truncated or corrupt file?); check the file"
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
        multi-sample minisblack). Only its nuclear channel is read, as grey; reading four
        channels as RGBA would be wrong."""
        page = self._series[0].keyframe
        axes, shape = self._axes[0], self._series[0].shape
        channels = next((n for ax, n in zip(axes, shape, strict=True) if ax in "SC"), 1)
        if channels < 2:
            return False
        photometric = int(page.photometric)
        if photometric not in (0, 1):  # MINISWHITE / MINISBLACK: else RGB, YCbCr, palette...
            return False
        alpha = channels == 2 and any(int(e) in (1, 2) for e in (page.extrasamples or ()))
        return not alpha

    def _describe_channels(self) -> tuple[Channel, ...]:
        """Every channel of the stack, named from the OME ``Channel`` elements where present."""
        axes, shape = self._axes[0], self._series[0].shape
        n = next((int(k) for ax, k in zip(axes, shape, strict=True) if ax in "SC"), 1)
        elements = []
        if self._pixels_xml is not None:
            elements = [el for el in self._pixels_xml if _local(el.tag) == "Channel"]
        out = []
        for i in range(n):
            attrs = dict(elements[i].attrib) if i < len(elements) else {}
            name = attrs.get("Name") or attrs.get("Fluor") or attrs.get("ID") or f"channel {i}"
            emission = (attrs.get("EmissionWavelength"), attrs.get("EmissionWavelengthUnit"))
            excitation = (attrs.get("ExcitationWavelength"), attrs.get("ExcitationWavelengthUnit"))
            out.append(
                Channel(
                    i,
                    name,
                    attrs.get("Fluor", ""),
                    ome_wavelength_nm(*emission),
                    ome_wavelength_nm(*excitation),
                )
            )
        return tuple(out)

    def _choose_channel(self) -> int:
        self.channels = self._describe_channels()
        chosen, reason = choose_nuclear(self.path, self.channels, self.options.channel)
        self.read_notes.update({"channel": chosen.label(), "channel_rule": reason})
        self.background = 0  # a fluorescence channel: no signal beyond the image
        log.info("%s: nuclear channel %s (%s)", self.path, chosen.label(), reason)
        return chosen.index

    def _choose_plane(self) -> int | str | None:
        """The Z plane to read (index or ``"max"``), ``None`` without a Z axis; refuses time
        series, unchosen Z stacks and other non-spatial axes longer than 1."""
        axes, shape = self._axes[0], self._series[0].shape
        sizes = dict(zip(axes, (int(k) for k in shape), strict=True))
        self.dims = {ax.lower(): sizes.get(ax, 1) for ax in "TCZ"}
        self.dims["c"] = next((k for ax, k in sizes.items() if ax in "SC"), 1)
        if sizes.get("T", 1) > 1:
            raise SlideFormatError(
                self.path,
                f"{sizes['T']} time points; nucscale reads one image per slide: "
                "write the time point you want as its own file",
            )
        others = [ax for ax, k in sizes.items() if ax not in "YXSCZT" and k > 1]
        if others:
            raise SlideFormatError(
                self.path,
                f"axis {others[0]!r} of length {sizes[others[0]]} in {axes!r}: "
                "nucscale reads one 2-D plane and will not pick one silently",
            )
        n_z = sizes.get("Z", 1)
        z = self.options.z
        if "Z" not in sizes:
            return None
        if n_z == 1:
            return 0
        if z is None:
            raise SlideFormatError(
                self.path,
                f"{n_z} focal planes (a Z stack); pass --z INDEX (0-{n_z - 1}) or "
                "--z max for a maximum projection",
            )
        if z != "max" and int(z) >= n_z:
            raise SlideFormatError(self.path, f"--z {z}: the stack has {n_z} planes (0-{n_z - 1})")
        self.read_notes["z"] = "max projection" if z == "max" else int(z)
        return z if z == "max" else int(z)

    def _intensity_window(self) -> tuple[float, float] | None:
        """One window for the whole slide, from its lowest level (see the module docstring)."""
        page = self._series[0].keyframe
        dtype = np.dtype(page.dtype)
        self.bit_depth = (
            f"float{dtype.itemsize * 8}" if dtype.kind == "f" else int(page.bitspersample or 8)
        )
        if dtype == np.uint8 and self.options.intensity is None:
            return None
        last = len(self._series) - 1
        lh, lw = _yx(self._series[last])
        step = max(1, int(np.ceil(np.sqrt(lh * lw / _WINDOW_SAMPLE_PX))))
        sample = self._samples(last, 0, 0, lw, lh, step)
        source = (
            "--intensity-range"
            if self.options.intensity is not None
            else (
                f"rule: {'percentiles' if dtype.kind == 'f' else 'bit depth used'} of level "
                f"{last} ({lw}x{lh} px)"
            )
        )
        window = window_of(sample, override=self.options.intensity)
        self.read_notes.update(describe(window, source))
        return window

    def _ome_pixels(self) -> ET.Element | None:
        """The OME ``Pixels`` element of the series read, or ``None``."""
        if not self._tif.is_ome or not self._tif.ome_metadata:
            return None
        try:
            root = ET.fromstring(self._tif.ome_metadata)
        except ET.ParseError:
            log.warning("%s: OME-XML does not parse; ignoring its metadata", self.path)
            return None
        images = [el for el in root.iter() if _local(el.tag) == "Image"]
        image = images[self._series_index] if self._series_index < len(images) else None
        for el in image.iter() if image is not None else root.iter():
            if _local(el.tag) == "Pixels":
                return el
        return None

    def _ome_mpp(self) -> float | None:
        pixels = self._pixels_xml
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

    def _samples(self, level: int, x: int, y: int, w: int, h: int, step: int = 1) -> np.ndarray:
        """Decoded samples of a region as (h, w) or (h, w, c): the chosen channel and Z plane
        (or the maximum over Z), in the file's dtype."""
        axes = self._axes[level]
        index: list[slice | int] = []
        channel_axis_seen = False
        for ax in axes:
            if ax == "Y":
                index.append(slice(y, y + h, step))
            elif ax == "X":
                index.append(slice(x, x + w, step))
            elif ax in "SC" and not channel_axis_seen:
                index.append(slice(None) if self._channel is None else self._channel)
                channel_axis_seen = True
            elif ax == "Z" and self._z == "max":
                index.append(slice(None))
            elif ax == "Z" and isinstance(self._z, int):
                index.append(self._z)
            else:
                index.append(0)
        try:
            region = np.asarray(self._array(level)[tuple(index)])
        except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
            raise SlideReadError(
                self.path, f"cannot decode level {level} region at ({x}, {y}): {exc}"
            ) from exc
        kept = [ax for ax, i in zip(axes, index, strict=True) if not isinstance(i, int)]
        if "Z" in kept:  # maximum projection
            region = region.max(axis=kept.index("Z"))
            kept.remove("Z")
        # Put the region in (y, x, channel) order whatever the file's order (planar, OME CYX).
        order = [kept.index("Y"), kept.index("X")] + [
            i for i, ax in enumerate(kept) if ax not in "YX"
        ]
        return np.transpose(region, order)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        region = self._samples(level, x, y, w, h)
        if region.dtype != np.uint8 and self._window is not None:
            region = to_uint8(region, self._window)
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


def ome_length_um(value: str | None, unit: str | None, default_unit: str = "µm") -> float | None:
    """An OME length attribute (PhysicalSize, wavelength) in µm; ``None`` when absent, not a
    positive number, or in a unit not understood. OME's default unit is µm for sizes and nm
    for wavelengths."""
    if value is None:
        return None
    try:
        size = float(value)
    except ValueError:
        return None
    factor = _UNIT_TO_UM.get((unit or default_unit).strip())
    return None if factor is None or size <= 0 else size * factor


def _ome_size(value: str | None, unit: str | None) -> float | None:
    size = ome_length_um(value, unit)
    if value is not None and size is None:
        log.warning("OME PhysicalSize %r %r not understood; ignoring it", value, unit)
    return size


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def ome_wavelength_nm(value: str | None, unit: str | None) -> float | None:
    """An OME wavelength in nm (OME's default unit), ``None`` when absent or unreadable."""
    um = ome_length_um(value, unit, default_unit="nm")
    return None if um is None else um * 1e3


def _yx(series: Any) -> tuple[int, int]:
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        return 0, 0
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


class _Divert(logging.Filter):
    """On the ``tifffile`` logger: records logged while this thread opens a TIFF go to the
    opener (which names the file in its error) instead of the console, where a worker would
    print ``<tifffile.TiffPages @1275950> invalid offset to first page`` without the file."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sink: list[str] | None = getattr(self.local, "sink", None)
        if sink is None:
            return True
        sink.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))
        return False


_DIVERT = _Divert()
logging.getLogger("tifffile").addFilter(_DIVERT)


@contextmanager
def _tifffile_warnings(said: list[str] | None = None) -> Iterator[list[str]]:
    """Collect what tifffile logs in this thread inside the block into ``said`` (a new list
    by default; see :class:`_Divert`)."""
    outer = getattr(_Divert.local, "sink", None)
    said = [] if said is None else said
    _Divert.local.sink = said
    try:
        yield said
    finally:
        _Divert.local.sink = outer
