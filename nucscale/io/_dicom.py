"""DICOM VL Whole Slide Microscopy through pydicom, decoding only the frames a region needs.

A slide is one series (SeriesInstanceUID): given a folder, its largest WSI series; given one
file, that file's series gathered from the files beside it. Levels are the VOLUME instances,
largest first (LABEL, OVERVIEW and THUMBNAIL instances are skipped). Frames map to tiles by
TILED_FULL order (row-major over tiles; frames past the first focal plane and optical path are
ignored) or, for TILED_SPARSE, by each frame's PlanePositionSlideSequence. Concatenated
instances join at their frame offsets; where several instances cover a tile the first wins.

Only metadata is parsed at open (``stop_before_pixels``). The first read of an instance
indexes its encapsulated fragments (Basic Offset Table or one fragment per frame, via
``pydicom.encaps``); a frame is then one seek and one read, decoded with imagecodecs (JPEG,
JPEG-LS, JPEG 2000) or, for RLE and anything unusual, ``pydicom.pixels.pixel_array(path,
index=i)``. Decoded frames sit in a small per-process LRU.

Colour: JPEG frames are decoded by libjpeg honouring the JPEG's own JFIF/Adobe colour space,
not PhotometricInterpretation; the shared CMU-1 pyramid is YCbCr JPEG labelled RGB, which
OpenSlide 4.0.1 shows in false colours (so DICOM never goes to OpenSlide). MONOCHROME2 is
repeated to RGB, MONOCHROME1 inverted first, YBR_FULL converted, and samples above 8 bits
scaled by their BitsStored range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as U
from pydicom.dataset import Dataset

from nucscale.errors import SlideFormatError
from nucscale.io._base import Level, Slide
from nucscale.io._dicom_frames import LIBRARY_ERRORS, Instance, frame
from nucscale.io._options import DEFAULT, ReadOptions

log = logging.getLogger(__name__)

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
_REQUIRED = ("TotalPixelMatrixColumns", "TotalPixelMatrixRows", "Rows", "Columns")


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
    width: int
    height: int
    tile_w: int
    tile_h: int
    instances: list[Instance]
    tile_inst: np.ndarray  # (tiles_y, tiles_x) instance index, -1 where no frame
    tile_frame: np.ndarray  # (tiles_y, tiles_x) frame index within that instance


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
        self._dlevels = _build_levels(volumes)
        w0, h0 = self._dlevels[0].width, self._dlevels[0].height
        self._levels = tuple(
            Level(lv.width, lv.height, (w0 / lv.width + h0 / lv.height) / 2) for lv in self._dlevels
        )
        ds0 = self._dlevels[0].instances[0].ds
        self._vendor = str(ds0.get("Manufacturer", "") or "").strip() or None
        self._file_mpp = _pixel_spacing_um(ds0)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lv = self._dlevels[level]
        out = np.full((h, w, 3), 255, np.uint8)
        for ty in range(y // lv.tile_h, (y + h - 1) // lv.tile_h + 1):
            for tx in range(x // lv.tile_w, (x + w - 1) // lv.tile_w + 1):
                k = int(lv.tile_inst[ty, tx])
                if k < 0:
                    continue  # TILED_SPARSE: no frame here, glass
                tile = frame(lv.instances[k], int(lv.tile_frame[ty, tx]))
                ox, oy = tx * lv.tile_w, ty * lv.tile_h
                x0, y0 = max(x, ox), max(y, oy)
                x1, y1 = min(x + w, ox + lv.tile_w), min(y + h, oy + lv.tile_h)
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
        levels.append(_tile_map(width, height, members))
    return levels


def _tile_map(width: int, height: int, members: list[tuple[Path, Dataset]]) -> _DicomLevel:
    ds0 = members[0][1]
    tile_w, tile_h = int(ds0.Columns), int(ds0.Rows)
    nx, ny = -(-width // tile_w), -(-height // tile_h)
    tile_inst = np.full((ny, nx), -1, np.int32)
    tile_frame = np.full((ny, nx), -1, np.int64)
    instances = []
    for k, (p, ds) in enumerate(members):
        if (int(ds.Columns), int(ds.Rows)) != (tile_w, tile_h):
            raise SlideFormatError(p, "instances of one level have different frame sizes")
        instances.append(Instance(p, ds))
        n_frames = int(ds.NumberOfFrames)
        positions = _sparse_positions(p, ds, n_frames)
        if positions is None:  # TILED_FULL; a concatenation part starts at its frame offset
            offset = int(ds.get("ConcatenationFrameOffsetNumber") or 0)
            expected = nx * ny * _count(ds, "TotalPixelMatrixFocalPlanes")
            expected *= _count(ds, "NumberOfOpticalPaths")
            if not ds.get("ConcatenationUID") and n_frames != expected:
                raise SlideFormatError(
                    p,
                    f"NumberOfFrames={n_frames} does not match the {nx}x{ny} tile grid "
                    f"(expected {expected} frames); the file is incomplete or mislabelled",
                )
            g = np.arange(offset, offset + min(n_frames, max(nx * ny - offset, 0)))
            rows, cols = np.divmod(g, nx)
            free = tile_inst[rows, cols] < 0
            tile_inst[rows[free], cols[free]] = k
            tile_frame[rows[free], cols[free]] = (g - offset)[free]
        else:
            for f, (r, c) in enumerate(positions):
                if r % tile_h or c % tile_w or not (0 <= r < height and 0 <= c < width):
                    raise SlideFormatError(p, f"frame {f} at ({c}, {r}) is off the tile grid")
                if tile_inst[r // tile_h, c // tile_w] < 0:
                    tile_inst[r // tile_h, c // tile_w] = k
                    tile_frame[r // tile_h, c // tile_w] = f
    return _DicomLevel(width, height, tile_w, tile_h, instances, tile_inst, tile_frame)


def _count(ds: Dataset, name: str) -> int:
    try:
        return max(int(ds.get(name) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _sparse_positions(path: Path, ds: Dataset, n_frames: int) -> list[tuple[int, int]] | None:
    """0-based (row, col) of each frame from per-frame plane positions, or None if TILED_FULL."""
    organisation = str(ds.get("DimensionOrganizationType") or "")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if organisation == "TILED_FULL" or not per_frame:
        if organisation == "TILED_SPARSE":
            raise SlideFormatError(path, "TILED_SPARSE without PerFrameFunctionalGroupsSequence")
        return None
    if len(per_frame) != n_frames:
        raise SlideFormatError(
            path, f"{len(per_frame)} per-frame groups for NumberOfFrames={n_frames}"
        )
    try:
        out = []
        for item in per_frame:
            pos = item.PlanePositionSlideSequence[0]
            r = int(pos.RowPositionInTotalImagePixelMatrix) - 1
            c = int(pos.ColumnPositionInTotalImagePixelMatrix) - 1
            out.append((r, c))
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        if organisation == "TILED_SPARSE":
            raise SlideFormatError(path, f"TILED_SPARSE frame without a position: {exc}") from exc
        return None
    return out
