"""OME-Zarr (OME-NGFF 0.4 and 0.5) images as slides, read lazily through zarr.

What is read (:func:`find_image`):

- a group whose OME metadata holds ``multiscales``: NGFF 0.4 keeps it in the ``.zattrs`` of a
  Zarr v2 group, 0.5 in the ``ome`` attribute of a Zarr v3 ``zarr.json``; zarr-python 3 reads
  both. The first entry of ``multiscales`` is read (the spec's default);
- a bioformats2raw layout (``"bioformats2raw.layout": 3``): series 0, the first path of the
  ``OME`` group's ``series`` list, else the group ``0``. ``read_notes`` say so and give the number
  of series, so a file of several images is never silently one of them.

Refused with the reason: an HCS plate or well (give one field of view), a label image, a Zarr
array, a Zarr group with no ``multiscales``, an NGFF version other than 0.4 or 0.5, axes the spec
does not allow, or an axis nucscale cannot place.

Levels are the ``datasets``, largest first. A level's downsample is its ``scale`` on y and x
over level 0's (translations are ignored: the half-pixel shift of a downsampled level is the
pixel-centre convention every reader here uses). A level whose size contradicts its scale, whose
t, c or z size differs from level 0's (a 3-D pyramid that also halves z would show another
plane), or whose dtype differs is not used, and ``read_notes["levels_ignored"]`` says why.

Pixel size: level 0's ``scale`` on y and x, times the multiscale-wide ``scale`` if any, in the
unit of the y and x axes (angstrom to metre; ``µm``, ``um`` and ``micron`` are accepted too).
No unit, an unknown unit or an implausible result gives no pixel size, so the pipeline asks for
``--mpp``.

Axes are the declared ones (t, c, z, y, x in any subset and order); untyped axes are placed by
name. A custom axis of more than one entry is refused.

Channels (:mod:`nucscale.io._channels`): names from the ``omero`` channel labels, names,
``Fluor`` and wavelengths from ``OME/METADATA.ome.xml`` in a bioformats2raw layout. Three uint8
channels are brightfield RGB when the ``omero`` colours are FF0000, 00FF00, 0000FF in that
order, or the labels are R, G, B (or red, green, blue), or ``rdefs.model`` is ``"color"`` and no
colours are given (OMERO sets that model on most fluorescence images too, so it is the weakest
sign); never when a channel is named as a nuclear stain or has a wavelength (a red, green, blue
coloured mCherry, GFP, DAPI stack is fluorescence), and never with ``--channel``. Otherwise the
nuclear channel is chosen by
:func:`~nucscale.io._channels.choose_nuclear` and read as grey (repeated to RGB).

Z and T (:mod:`nucscale.io._options`): more than one time point is refused; one focal plane is
read as it is; a stack needs ``--z INDEX`` or ``--z max`` (maximum projection), never an
arbitrary plane.

Samples that are not uint8 go through one intensity window per slide
(:mod:`nucscale.io._intensity`), computed at open from the lowest level as it is read (same
channel, plane or projection); a lowest level over :data:`SAMPLE_PIXELS` samples (a slide
without a pyramid) is sampled one chunk in k across and down, so that every worker's open does
not decode the whole slide.

zarr is used directly, not ome-zarr-py's reader: a region read needs one array per level and
basic indexing, which zarr-python 3 gives for Zarr v2 and v3 alike.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import zarr

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._base import Level, Slide
from nucscale.io._channels import choose_nuclear
from nucscale.io._intensity import FLOAT_PERCENTILES, describe, to_uint8, window_of
from nucscale.io._omezarr_meta import (
    LENGTH_UM,
    array_at,
    axis_roles,
    channels_of,
    find_image,
    is_zarr_folder,
    rgb_reason,
    scale_of,
    xml_channels,
)
from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.io._plain import plausible_mpp

log = logging.getLogger(__name__)

#: Pixels of the lowest level read whole for the intensity window; bigger levels are sampled
#: by chunks.
SAMPLE_PIXELS = 2048 * 2048


class OmeZarrSlide(Slide):
    """An OME-Zarr image (NGFF 0.4 or 0.5, or a bioformats2raw layout) read chunk by chunk."""

    backend = "ome-zarr"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        group, meta, version, notes = find_image(self.path)
        self._vendor = "ome-zarr"
        self.read_notes.update(notes)
        multiscales = meta["multiscales"]
        if not isinstance(multiscales, list) or not multiscales:
            raise SlideFormatError(self.path, "'multiscales' is empty; not an OME-Zarr image")
        if len(multiscales) > 1:
            self.read_notes["multiscales"] = f"the first of {len(multiscales)}"
        ms = multiscales[0]
        datasets = ms.get("datasets") or []
        if not datasets:
            raise SlideFormatError(self.path, "multiscales has no datasets; no image to read")
        arrays = [array_at(group, self.path, d) for d in datasets]
        self._roles = axis_roles(self.path, ms.get("axes"), arrays[0].shape)
        self._units = [a.get("unit") for a in ms["axes"]]
        self._xml_channels = xml_channels(self.path) if "series" in notes else []
        self.read_notes["ngff_version"] = version
        self._arrays, self._levels = self._make_levels(ms, datasets, arrays)
        self._file_mpp = self._pixel_size(ms, datasets[0], arrays[0].ndim)
        shape0 = arrays[0].shape
        self.dims = {r: int(shape0[self._roles.index(r)]) if r in self._roles else 1 for r in "tcz"}
        dtype = np.dtype(arrays[0].dtype)
        if dtype.kind not in "uifb":
            raise SlideFormatError(self.path, f"sample type {dtype} is not an image")
        self.bit_depth = dtype.itemsize * 8 if dtype.kind in "uib" else str(dtype)
        self._check_time()
        self._z = self._choose_z()
        self._channel = self._choose_channel(meta, dtype)
        self._window = self._intensity_window(dtype)

    # -- metadata -----------------------------------------------------------------------------
    def _make_levels(
        self, ms: dict, datasets: list[dict], arrays: list[zarr.Array]
    ) -> tuple[list[zarr.Array], tuple[Level, ...]]:
        n = arrays[0].ndim
        iy, ix = self._roles.index("y"), self._roles.index("x")
        h0, w0 = arrays[0].shape[iy], arrays[0].shape[ix]
        if h0 < 1 or w0 < 1:
            raise SlideFormatError(self.path, "level 0 has no pixels")
        s0 = scale_of(datasets[0], n)
        kept, levels, ignored = [arrays[0]], [Level(int(w0), int(h0), 1.0)], []
        for d, arr in zip(datasets[1:], arrays[1:], strict=True):
            s = scale_of(d, n)
            h, w = arr.shape[iy], arr.shape[ix]
            if s is not None and s0 is not None and s0[iy] > 0 and s0[ix] > 0:
                dy, dx = s[iy] / s0[iy], s[ix] / s0[ix]
            else:  # no usable scale: the sizes say it
                dy, dx = h0 / max(h, 1), w0 / max(w, 1)
            reason = None
            if arr.ndim != n or any(
                arr.shape[i] != arrays[0].shape[i] for i in range(n) if i not in (iy, ix)
            ):
                reason = f"its shape {arr.shape} changes t, c or z from level 0's"
            elif np.dtype(arr.dtype) != np.dtype(arrays[0].dtype):
                reason = f"its dtype {arr.dtype} differs from level 0's"
            elif min(h, w) < 1 or not (dy > 0 and dx > 0):
                reason = "it has no pixels or no positive scale"
            elif abs(h * dy - h0) > dy or abs(w * dx - w0) > dx:
                reason = f"its size {w}x{h} is not level 0 over its scale ({dx:g}, {dy:g})"
            elif (dx + dy) / 2 <= levels[-1].downsample:
                reason = "it is not smaller than the level before"
            if reason is None:
                kept.append(arr)
                levels.append(Level(int(w), int(h), (dx + dy) / 2))
            else:
                ignored.append({"path": str(d.get("path")), "reason": reason})
        if ignored:
            log.warning("%s: pyramid levels not used: %s", self.path, ignored)
            self.read_notes["levels_ignored"] = ignored
        return kept, tuple(levels)

    def _pixel_size(self, ms: dict, level0: dict, n: int) -> float | None:
        iy, ix = self._roles.index("y"), self._roles.index("x")
        scale = scale_of(level0, n)
        if scale is None:
            self.read_notes["pixel_size"] = "level 0 has no scale; pass --mpp"
            return None
        sy, sx = scale[iy], scale[ix]
        overall = scale_of(ms, n) if ms.get("coordinateTransformations") else None
        if overall is not None:
            sy, sx = sy * overall[iy], sx * overall[ix]
        uy, ux = self._units[iy], self._units[ix]
        fy, fx = (LENGTH_UM.get(str(u or "").strip().lower()) for u in (uy, ux))
        if fy is None or fx is None:
            what = "no unit" if not (uy or ux) else f"units {uy!r}, {ux!r}"
            self.read_notes["pixel_size"] = f"{what} on the y and x axes; pass --mpp"
            return None
        um = (sy * fy + sx * fx) / 2
        mpp = plausible_mpp(um)
        if mpp is None:
            self.read_notes["pixel_size"] = f"scale gives {um:g} µm/px, not plausible; pass --mpp"
        return mpp

    def _check_time(self) -> None:
        t = self.dims["t"]
        if t > 1:
            raise SlideFormatError(
                self.path,
                f"{t} time points; nucscale reads one time point: save the time point to "
                "analyse as an image of its own",
            )

    def _choose_z(self) -> int | str:
        nz, choice = self.dims["z"], self.options.z
        if choice is None:
            if nz > 1:
                raise SlideFormatError(self.path, f"{nz} focal planes; pass --z INDEX or --z max")
            z: int | str = 0
            rule = "the only plane"
        elif choice == "max":
            z, rule = "max", f"--z max: maximum projection of {nz} plane(s)"
        else:
            z, rule = int(choice), "--z"
            if z >= nz:
                raise SlideFormatError(
                    self.path, f"--z {z}: the image has {nz} focal plane(s) (0-{nz - 1})"
                )
        if "z" in self._roles:  # as the TIFF and DICOM readers note it
            self.read_notes.update({"z": "max projection" if z == "max" else z, "z_rule": rule})
        return z

    def _choose_channel(self, meta: dict, dtype: np.dtype) -> int | None:
        """Index of the channel read as grey, or ``None`` for RGB (or no channel axis)."""
        omero = meta.get("omero")
        omero = omero if isinstance(omero, dict) else {}
        self.channels = channels_of(self.path, omero, self._xml_channels, self.dims["c"])
        rgb = None if self.options.channel else rgb_reason(self.channels, omero, dtype)
        if rgb is not None:
            self.read_notes.update({"channel": "RGB (0, 1, 2)", "channel_rule": rgb})
            return None
        ch, reason = choose_nuclear(self.path, self.channels, self.options.channel)
        self.read_notes.update({"channel": ch.label(), "channel_rule": reason})
        if len(self.channels) > 1:
            self.background = 0  # one fluorescence channel of several: no signal beyond
        return ch.index if "c" in self._roles else None

    def _intensity_window(self, dtype: np.dtype) -> tuple[float, float] | None:
        override = self.options.intensity
        if dtype in (np.uint8, np.bool_) and override is None:
            self.read_notes.update(describe(None, "8-bit samples as stored"))
            return None
        if override is not None:
            window = window_of(np.zeros(0, dtype), override=override)
            self.read_notes.update(describe(window, "--intensity-range"))
            return window
        level = len(self._levels) - 1
        sample, chunk_step = self._sample(level)
        window = window_of(sample)
        if dtype.kind in "ui":
            top = int(sample.max(initial=0))
            source = f"bit depth of the values (largest {top} at level {level})"
        else:
            lo, hi = FLOAT_PERCENTILES
            source = f"{lo:g}th-{hi:g}th percentiles of level {level}"
        if chunk_step > 1:
            source += f", one chunk in {chunk_step} across and down"
        self.read_notes.update(describe(window, source))
        return window

    def _sample(self, level: int) -> tuple[np.ndarray, int]:
        """The samples of ``level`` as read, for the intensity window, and the chunk step: the
        whole level up to :data:`SAMPLE_PIXELS` samples (planes of a projection count), else one
        chunk in k across and down (the same chunks on every worker), so a single-level slide
        is not decoded whole at open."""
        lv = self._levels[level]
        size = lv.width * lv.height * (self.dims["z"] if self._z == "max" else 1)
        if size <= SAMPLE_PIXELS:
            return self._raw(level, 0, 0, lv.width, lv.height), 1
        arr = self._arrays[level]
        cy, cx = arr.chunks[self._roles.index("y")], arr.chunks[self._roles.index("x")]
        k = max(1, math.ceil(math.sqrt(size / SAMPLE_PIXELS)))
        parts = [
            self._raw(level, x, y, min(cx, lv.width - x), min(cy, lv.height - y)).ravel()
            for y in range(0, lv.height, cy * k)
            for x in range(0, lv.width, cx * k)
        ]
        return np.concatenate(parts), k

    # -- pixels -------------------------------------------------------------------------------
    def _raw(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Samples (h, w) or (h, w, 3) as stored, the channel, plane or projection chosen."""
        index: list[int | slice] = []
        for role in self._roles:
            if role == "y":
                index.append(slice(y, y + h))
            elif role == "x":
                index.append(slice(x, x + w))
            elif role == "c":
                index.append(slice(None) if self._channel is None else self._channel)
            elif role == "z" and self._z == "max":
                index.append(slice(None))
            elif role == "z":
                index.append(int(self._z))
            else:
                index.append(0)
        try:
            region = np.asarray(self._arrays[level][tuple(index)])
        except (OSError, ValueError, KeyError, IndexError, RuntimeError, TypeError) as exc:
            raise SlideReadError(
                self.path, f"cannot decode level {level} region at ({x}, {y}): {exc}"
            ) from exc
        kept = [r for r, i in zip(self._roles, index, strict=True) if isinstance(i, slice)]
        order = [kept.index("y"), kept.index("x")] + [kept.index(r) for r in "cz" if r in kept]
        region = np.transpose(region, order)
        if "z" in kept:
            region = region.max(axis=-1)
        return region

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        u8 = to_uint8(self._raw(level, x, y, w, h), self._window)
        if u8.ndim == 2:
            return np.repeat(u8[:, :, None], 3, axis=2)
        return np.ascontiguousarray(u8)


__all__ = ["OmeZarrSlide", "is_zarr_folder"]
