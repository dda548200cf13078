"""DICOM VL Whole Slide Microscopy through pydicom, decoding only the frames a region needs.

A slide is one series (SeriesInstanceUID): given a folder, its largest WSI series; given one
file, that file's series gathered from the files beside it. Levels are the VOLUME instances,
largest first (LABEL, OVERVIEW and THUMBNAIL instances are skipped). Each frame's tile, focal
plane and optical path come from the declared layout only (TILED_FULL order, else per-frame
positions; a multi-frame file with neither is refused, see
:func:`~nucscale.io._dicom_frames.placement`). Concatenated instances join at their frame
offsets; where several instances cover a tile the first wins.

Optical paths are the slide's channels (``OpticalPathIdentifier``, ``OpticalPathDescription``,
``IlluminationWaveLength`` as excitation, the image-path filter as emission). Fluorescence
(MONOCHROME samples, or more than one optical path) reads only the nuclear optical path chosen
by :func:`~nucscale.io._channels.choose_nuclear`, grey repeated to RGB; brightfield RGB with one
optical path is read as it is. Focal planes: one is read as it is; several need
``ReadOptions.z`` (an index, or ``"max"`` for the maximum projection of the planes' frames).
Samples of more than 8 bits pass through one intensity window per slide
(:func:`~nucscale.io._intensity.window_of` with ``BitsStored``, or ``--intensity-range``).

Only metadata is parsed at open (``stop_before_pixels``), plus, for samples of more than 8
bits, a few frames of the lowest level (the sample type :func:`window_of` needs). Frames are
located and decoded by :mod:`nucscale.io._dicom_frames`.

Colour: JPEG frames are decoded by libjpeg honouring the JPEG's own JFIF/Adobe colour space,
not PhotometricInterpretation; the shared CMU-1 pyramid is YCbCr JPEG labelled RGB, which
OpenSlide 4.0.1 shows in false colours (so DICOM never goes to OpenSlide). MONOCHROME2 is
repeated to RGB, MONOCHROME1 inverted first, YBR_FULL converted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as U
from pydicom.dataset import Dataset

from nucscale.errors import SlideFormatError
from nucscale.io._base import Level, Slide
from nucscale.io._channels import Channel, choose_nuclear
from nucscale.io._dicom_frames import (
    LIBRARY_ERRORS,
    Grid,
    Instance,
    Placement,
    frame,
    optical_path_keys,
    placement,
    rank_focal_planes,
    samples,
)
from nucscale.io._intensity import describe, window_of
from nucscale.io._options import DEFAULT, ReadOptions

log = logging.getLogger(__name__)

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
_REQUIRED = ("TotalPixelMatrixColumns", "TotalPixelMatrixRows", "Rows", "Columns")
_WINDOW_SAMPLE_FRAMES = 16  # lowest-level frames decoded at open for the intensity window


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a file with the DICM magic at offset 128."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@dataclass
class _DicomLevel:
    grid: Grid
    instances: list[Instance]
    placements: list[Placement]
    # (planes read, tiles_y, tiles_x): instance index (-1 where no frame), frame within it
    tile_inst: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.int32))
    tile_frame: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.int64))


class DicomSlide(Slide):
    """A DICOM WSI series (folder or one of its files) read frame by frame with pydicom."""

    backend = "dicom"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        series = _gather(self.path)
        volumes = [(p, ds) for p, ds in series if _flavour(ds) == "VOLUME"]
        if not volumes:
            raise SlideFormatError(
                self.path, "DICOM WSI series has no VOLUME image (only label/overview/thumbnail)"
            )
        levels = _build_levels(volumes)
        ds0 = levels[0].instances[0].ds
        key = self._choose_path(levels, ds0)
        levels = _levels_with(self.path, levels, key)
        planes = self._choose_planes(levels, key)
        for lv, chosen in zip(levels, planes, strict=True):
            _fill_tile_map(lv, key, chosen)
        self._dlevels = levels
        w0, h0 = levels[0].grid.width, levels[0].grid.height
        self._levels = tuple(
            Level(g.width, g.height, (w0 / g.width + h0 / g.height) / 2)
            for g in (lv.grid for lv in levels)
        )
        self._vendor = str(ds0.get("Manufacturer", "") or "").strip() or None
        self._file_mpp = _pixel_spacing_um(ds0)
        self._window = self._choose_window(ds0)

    def _choose_path(self, levels: list[_DicomLevel], ds0: Dataset) -> str:
        """Describe the optical paths; the key of the one to read (the nuclear one if
        fluorescence)."""
        keys, channels = _channels(levels)
        monochrome = str(ds0.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
        described = any(
            inst.ds.get("OpticalPathSequence") for lv in levels for inst in lv.instances
        )
        self.channels = tuple(channels) if described or monochrome or len(keys) > 1 else ()
        if not (monochrome or len(keys) > 1):
            return keys[0]  # brightfield RGB, one optical path
        chosen, rule = choose_nuclear(self.path, channels, self.options.channel)
        self.read_notes.update(channel=chosen.label(), channel_rule=rule)
        self.background = 0  # a fluorescence channel: tiles a sparse file lacks hold no signal
        return keys[chosen.index]

    def _choose_planes(self, levels: list[_DicomLevel], key: str) -> list[np.ndarray]:
        """The focal planes to read at each level: its one plane, ``--z INDEX`` or all
        (``--z max``)."""
        z, out = self.options.z, []
        for i, lv in enumerate(levels):
            planes = np.unique(np.concatenate([pl.plane[pl.path == key] for pl in lv.placements]))
            n = len(planes)
            if n > 1 and z is None:
                where = "" if i == 0 else f" at level {i}"
                raise SlideFormatError(
                    self.path,
                    f"{n} focal planes{where}; pass --z INDEX (0-{n - 1}) or --z max for a "
                    "maximum projection",
                )
            if n > 1 and z != "max" and int(str(z)) >= n:
                raise SlideFormatError(
                    self.path, f"--z {z}: the slide has {n} focal planes (0-{n - 1})"
                )
            out.append(planes if n == 1 or z == "max" else planes[[int(str(z))]])
            if i == 0:
                self.dims = {"z": n, "t": 1, "c": max(len(self.channels), 1)}
                if n > 1:
                    self.read_notes["z"] = "max projection" if z == "max" else int(str(z))
        return out

    def _choose_window(self, ds0: Dataset) -> tuple[float, float] | None:
        """The slide's intensity window (samples of more than 8 bits, or --intensity-range on
        grey), recorded in ``read_notes``."""
        bits = int(ds0.get("BitsStored") or ds0.get("BitsAllocated") or 8)
        self.bit_depth = bits
        grey = str(ds0.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
        override = self.options.intensity
        if int(ds0.get("BitsAllocated") or 8) <= 8 and not (grey and override):
            if grey:
                self.read_notes.update(describe(None, "8-bit samples as stored"))
            return None
        window = window_of(_lowest_sample(self._dlevels[-1]), bits_stored=bits, override=override)
        source = "--intensity-range" if override else f"rule: DICOM BitsStored {bits}"
        self.read_notes.update(describe(window, source))
        return window

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lv = self._dlevels[level]
        tw, th = lv.grid.tile_w, lv.grid.tile_h
        out = np.full((h, w, 3), self.background, np.uint8)
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                frames = [
                    frame(lv.instances[k], int(f), self._window)
                    for k, f in zip(lv.tile_inst[:, ty, tx], lv.tile_frame[:, ty, tx], strict=True)
                    if k >= 0
                ]
                if not frames:
                    continue  # no frame here (TILED_SPARSE): background
                tile = frames[0] if len(frames) == 1 else np.maximum.reduce(frames)  # --z max
                ox, oy = tx * tw, ty * th
                x0, y0 = max(x, ox), max(y, oy)
                x1, y1 = min(x + w, ox + tw), min(y + h, oy + th)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return out


# -- finding the series -------------------------------------------------------------------------
def _header(path: Path, **kwargs: Any) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, **kwargs)
    except (pydicom.errors.InvalidDicomError, *LIBRARY_ERRORS) as exc:
        raise SlideFormatError(path, f"not a readable DICOM file ({exc})") from exc


def _describe(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    name = U.UID(str(sop)).name if sop else "no SOP class"
    return f"DICOM {ds.get('Modality') or 'unknown-modality'} image ({name})"


def _gather(path: Path) -> list[tuple[Path, Dataset]]:
    """(file, header) of every instance of the slide's series."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_dicom_file(p))
        if not files:
            raise SlideFormatError(
                path, "folder holds no DICOM files; give a slide file or a DICOM WSI folder"
            )
        headers = [(p, ds) for p in files if (ds := _header_or_none(p)) is not None]
        wsi = [(p, ds) for p, ds in headers if ds.get("SOPClassUID") == VL_WSI]
        if not wsi:
            kinds = sorted({str(ds.get("Modality") or "?") for _, ds in headers})
            raise SlideFormatError(
                path,
                f"folder holds DICOM {', '.join(kinds) or 'unreadable'} images but no VL "
                "Whole Slide Microscopy image; nucscale reads whole-slide images only",
            )
        uids = {ds.get("SeriesInstanceUID") for _, ds in wsi}
        uid = max(wsi, key=lambda item: _area(item[1]))[1].get("SeriesInstanceUID")
        if len(uids) > 1:
            log.warning("%s: %d WSI series; reading the largest, %s", path, len(uids), uid)
        return [(p, ds) for p, ds in wsi if ds.get("SeriesInstanceUID") == uid]
    ds = _header(path)
    if ds.get("SOPClassUID") != VL_WSI:
        raise SlideFormatError(
            path,
            f"{_describe(ds)}, not a whole-slide image; "
            "nucscale reads DICOM VL Whole Slide Microscopy series",
        )
    uid = ds.get("SeriesInstanceUID")
    series = [(path, ds)]
    for p in sorted(path.parent.iterdir()):
        if p == path or not p.is_file() or not is_dicom_file(p):
            continue
        other = _header_or_none(p, specific_tags=["SeriesInstanceUID", "SOPClassUID"])
        if other is None or not uid or other.get("SeriesInstanceUID") != uid:
            continue
        if other.get("SOPClassUID") == VL_WSI:
            series.append((p, _header(p)))
    return series


def _header_or_none(path: Path, **kwargs: Any) -> Dataset | None:
    try:
        return _header(path, **kwargs)
    except SlideFormatError as exc:
        log.warning("%s; skipped", exc)
        return None


def _area(ds: Dataset) -> int:
    return int(ds.get("TotalPixelMatrixColumns") or 0) * int(ds.get("TotalPixelMatrixRows") or 0)


def _flavour(ds: Dataset) -> str:
    image_type = ds.get("ImageType") or []
    return str(image_type[2]).upper() if len(image_type) > 2 else "VOLUME"


def _pixel_spacing_um(ds: Dataset) -> float | None:
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        values = [float(v) * 1000.0 for v in spacing]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    values = [v for v in values if np.isfinite(v) and v > 0]
    return float(np.mean(values)) if values else None


# -- levels and tile maps -----------------------------------------------------------------------
def _int_tag(path: Path, ds: Dataset, name: str) -> int:
    value = ds.get(name)
    if value is None or value == "":
        raise SlideFormatError(
            path, f"missing required DICOM tag {name}; not a readable tiled whole-slide image"
        )
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise SlideFormatError(path, f"DICOM tag {name}={value!r} is not a number") from exc
    if n <= 0:
        raise SlideFormatError(path, f"DICOM tag {name}={n} must be positive")
    return n


def _build_levels(volumes: list[tuple[Path, Dataset]]) -> list[_DicomLevel]:
    groups: dict[tuple[int, int], list[tuple[Path, Dataset]]] = {}
    for p, ds in volumes:
        for name in (*_REQUIRED, "NumberOfFrames"):
            _int_tag(p, ds, name)
        if not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None):
            raise SlideFormatError(p, "no TransferSyntaxUID in the DICOM file meta; rewrite it")
        size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
        groups.setdefault(size, []).append((p, ds))
    levels = []
    for (width, height), members in sorted(groups.items(), key=lambda kv: -kv[0][0]):
        members.sort(key=lambda m: (int(m[1].get("InstanceNumber") or 0), str(m[0])))
        ds0 = members[0][1]
        grid = Grid(width, height, int(ds0.Columns), int(ds0.Rows))
        for p, ds in members:
            if (int(ds.Columns), int(ds.Rows)) != (grid.tile_w, grid.tile_h):
                raise SlideFormatError(p, "instances of one level have different frame sizes")
        levels.append(
            _DicomLevel(
                grid,
                [Instance(p, ds) for p, ds in members],
                rank_focal_planes([placement(p, ds, grid) for p, ds in members]),
            )
        )
    return levels


def _levels_with(path: Path, levels: list[_DicomLevel], key: str) -> list[_DicomLevel]:
    """The levels that hold frames of optical path ``key`` (a pyramid may lack some paths
    below full resolution)."""
    kept = [lv for lv in levels if any((pl.path == key).any() for pl in lv.placements)]
    if not kept or kept[0] is not levels[0]:
        raise SlideFormatError(
            path, f"optical path {key!r} has no frames at full resolution; the file is incomplete"
        )
    if len(kept) < len(levels):
        log.info("%s: %d levels lack optical path %r; skipped", path, len(levels) - len(kept), key)
    return kept


def _fill_tile_map(lv: _DicomLevel, key: str, planes: np.ndarray) -> None:
    """Which instance and frame hold each tile of each plane read (the first instance wins)."""
    nx, ny = lv.grid.nx, lv.grid.ny
    lv.tile_inst = np.full((len(planes), ny, nx), -1, np.int32)
    lv.tile_frame = np.full((len(planes), ny, nx), -1, np.int64)
    for k, pl in enumerate(lv.placements):
        for i, plane in enumerate(planes):
            sel = (pl.path == key) & (pl.plane == plane)
            rows, cols, frames = pl.row[sel], pl.col[sel], pl.frame[sel]
            _, first = np.unique(rows * nx + cols, return_index=True)  # first frame per tile
            rows, cols, frames = rows[first], cols[first], frames[first]
            free = lv.tile_inst[i, rows, cols] < 0
            lv.tile_inst[i, rows[free], cols[free]] = k
            lv.tile_frame[i, rows[free], cols[free]] = frames[free]


def _lowest_sample(lv: _DicomLevel) -> np.ndarray:
    """Samples of the lowest level's first frames, for :func:`window_of` (which, given
    BitsStored, needs only their type)."""
    placed = np.argwhere(lv.tile_inst >= 0)[:_WINDOW_SAMPLE_FRAMES]
    parts = [
        samples(lv.instances[int(lv.tile_inst[tuple(ix)])], int(lv.tile_frame[tuple(ix)])).ravel()
        for ix in placed
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


# -- optical paths --------------------------------------------------------------------------------
def _channels(levels: list[_DicomLevel]) -> tuple[list[str], list[Channel]]:
    """The optical path keys that have frames, in the files' order, and their descriptions."""
    items: dict[str, Dataset] = {}
    order: list[str] = []
    for lv in levels:
        for inst in lv.instances:
            seq = inst.ds.get("OpticalPathSequence") or []
            for key, item in zip(optical_path_keys(inst.ds), seq, strict=False):
                items.setdefault(key, item)
                order.append(key)
    framed = {str(k) for lv in levels for pl in lv.placements for k in np.unique(pl.path)}
    order += sorted(framed)
    keys = [k for k in dict.fromkeys(order) if k in framed]
    return keys, [_channel(i, k, items.get(k, Dataset())) for i, k in enumerate(keys)]


def _channel(index: int, key: str, item: Dataset) -> Channel:
    description = str(item.get("OpticalPathDescription") or "").strip()
    if not description:
        codes = item.get("ChannelDescriptionCodeSequence") or []
        description = ", ".join(str(c.get("CodeMeaning") or "") for c in codes).strip(", ")
    excitation = _nm(item.get("IlluminationWaveLength")) or _filter_nm(item, "LightPath")
    return Channel(
        index,
        key or "unnamed",
        description,
        emission_nm=_filter_nm(item, "ImagePath"),
        excitation_nm=excitation,
    )


def _filter_nm(item: Dataset, which: str) -> float | None:
    """A filter's centre wavelength: its pass-through wavelength, else its pass band's middle."""
    through = _nm(item.get(f"{which}FilterPassThroughWavelength"))
    if through is not None:
        return through
    band = item.get(f"{which}FilterPassBand")
    values = [_nm(v) for v in (band or [])]
    if len(values) == 2 and values[0] is not None and values[1] is not None:
        return (values[0] + values[1]) / 2
    return None


def _nm(value: Any) -> float | None:
    try:
        nm = float(value)
    except (TypeError, ValueError):
        return None
    return nm if np.isfinite(nm) and nm > 0 else None
