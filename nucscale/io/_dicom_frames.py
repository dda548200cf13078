"""Where the frames of one DICOM WSI instance lie, and decoding them.

Frame layout (:func:`placement`), one rule (DICOM PS3.3 C.7.6.17.3):

- ``DimensionOrganizationType`` TILED_FULL: frames are implicit, column fastest, then row, then
  focal plane, then optical path (in ``OpticalPathSequence`` order): frame
  ``((path * n_focal + plane) * tiles_y + row) * tiles_x + col``, counted from the instance's
  ``ConcatenationFrameOffsetNumber`` in a concatenation;
- otherwise each frame's ``PlanePositionSlideSequence`` (TILED_SPARSE, or any file with
  per-frame positions) gives its tile and its ``ZOffsetInSlideCoordinateSystem``, and its
  ``OpticalPathIdentificationSequence`` (per-frame, else shared) its optical path. Its focal
  plane is the rank of its Z among the level's frames of the same tile and optical path
  (:func:`rank_focal_planes`): scanners record each tile's autofocus Z, so a single-plane
  slide has as many distinct Z offsets as tiles, while a Z stack has one frame per plane at
  every tile, in this instance or another;
- a single frame covering the whole image needs neither;
- anything else is refused: frames in an unknown order would be a silent scramble.

The first read of an instance indexes its encapsulated fragments (Basic Offset Table or one
fragment per frame, via ``pydicom.encaps``); a frame is then one seek and one read, decoded with
imagecodecs (JPEG, JPEG-LS, JPEG 2000) or, for RLE and anything unusual,
``pydicom.pixels.pixel_array(path, index=i)``. Decoded frames sit in a small per-process LRU.

JPEG frames are decoded by libjpeg honouring the JPEG's own JFIF/Adobe colour space, not
PhotometricInterpretation (the shared CMU-1 pyramid is YCbCr JPEG labelled RGB). MONOCHROME1 is
inverted within its BitsStored range; samples of more than 8 bits go through the slide's
intensity window (:mod:`nucscale.io._intensity`); grey is repeated to RGB.
"""

from __future__ import annotations

import functools
import struct
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import imagecodecs
import numpy as np
import pydicom
from pydicom import uid as U
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame, parse_basic_offsets, parse_fragments
from pydicom.pixels import convert_color_space, pixel_array

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._intensity import to_uint8
from nucscale.io._plain import to_rgb8

_JPEG = {U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.JPEGLossless, U.JPEGLosslessSV1}
_JPEGLS = {U.JPEGLSLossless, U.JPEGLSNearLossless}
_J2K = {U.JPEG2000Lossless, U.JPEG2000, U.HTJ2KLossless, U.HTJ2KLosslessRPCL, U.HTJ2K}
_NATIVE = {U.ImplicitVRLittleEndian, U.ExplicitVRLittleEndian}
_NATIVE_PHOTOMETRIC = ("RGB", "YBR_FULL", "MONOCHROME1", "MONOCHROME2")
_FRAME_CACHE_SIZE = 96  # decoded frames kept per process (~70 MB of 500-px RGB frames)
LIBRARY_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                   RuntimeError, struct.error, imagecodecs.DelayedImportError)  # fmt: skip


@dataclass(eq=False)  # hashable by identity: the key of the decoded-frame cache
class Instance:
    """One VOLUME instance: its header and, after the first read, where its frames lie."""

    path: Path
    ds: Dataset
    lock: threading.Lock = field(default_factory=threading.Lock)
    mode: str = ""  # "encap", "native", "scan" (pydicom.encaps.get_frame) or "pydicom"
    start: int = 0  # native: first pixel byte; scan: Basic Offset Table item
    frame_bytes: int = 0  # native only
    fragments: list[list[int]] = field(default_factory=list)  # encap: item offsets per frame

    @property
    def tsyntax(self) -> U.UID:
        return U.UID(self.ds.file_meta.TransferSyntaxUID)


# -- frame layout ----------------------------------------------------------------------------
class Grid(NamedTuple):
    """A level's total pixel matrix and its frame (tile) size."""

    width: int
    height: int
    tile_w: int
    tile_h: int

    @property
    def nx(self) -> int:
        return -(-self.width // self.tile_w)

    @property
    def ny(self) -> int:
        return -(-self.height // self.tile_h)


@dataclass(frozen=True)
class Placement:
    """Where the frames of one instance lie: parallel arrays, one entry per placed frame."""

    layout: str  # "TILED_FULL", "per-frame positions" or "one frame"
    frame: np.ndarray  # frame index within the instance
    path: np.ndarray  # optical path key (str) of each frame
    plane: np.ndarray  # focal plane index; Z offset in µm from per-frame positions until
    # rank_focal_planes turns it into an index
    row: np.ndarray  # tile row
    col: np.ndarray  # tile column


def count(ds: Dataset, name: str, default: int = 1) -> int:
    """A positive count tag, ``default`` when absent or unreadable."""
    try:
        return max(int(ds.get(name) or default), 1)
    except (TypeError, ValueError):
        return default


def optical_path_keys(ds: Dataset) -> list[str]:
    """The instance's optical paths in TILED_FULL order: ``OpticalPathSequence`` identifiers;
    ``""`` for the one path of a file that describes none, ``"1"``, ``"2"``, ... for several."""
    items = ds.get("OpticalPathSequence") or []
    keys = [str(it.get("OpticalPathIdentifier") or "").strip() or str(i + 1)
            for i, it in enumerate(items)]  # fmt: skip
    if keys:
        return keys
    n = count(ds, "NumberOfOpticalPaths")
    return [""] if n == 1 else [str(i + 1) for i in range(n)]


def placement(path: Path, ds: Dataset, grid: Grid) -> Placement:
    """Each frame's optical path, focal plane and tile (see the module docstring).

    Raises
    ------
    SlideFormatError
        The frame order is not declared, a position is off the tile grid, or the frame count
        does not match a TILED_FULL grid.
    """
    n_frames = int(ds.NumberOfFrames)
    organisation = str(ds.get("DimensionOrganizationType") or "").strip().upper()
    if organisation == "TILED_FULL":
        return _tiled_full(path, ds, grid, n_frames)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per_frame and len(per_frame) != n_frames:
        raise SlideFormatError(
            path, f"{len(per_frame)} per-frame groups for NumberOfFrames={n_frames}"
        )
    unplaced = [f for f, item in enumerate(per_frame) if not item.get("PlanePositionSlideSequence")]
    if per_frame and not unplaced:
        return _per_frame(path, ds, grid, per_frame)
    if organisation == "TILED_SPARSE":
        first = unplaced[0] if unplaced else 0
        raise SlideFormatError(
            path,
            f"TILED_SPARSE but frame {first} has no position (PlanePositionSlideSequence); "
            "the file is incomplete",
        )
    if n_frames == 1 and grid.nx == grid.ny == 1:
        key = _frame_path(path, ds, Dataset(), _shared(ds), 0)
        one = np.zeros(1, np.int64)
        return Placement("one frame", one, np.array([key]), np.zeros(1), one, one)
    raise SlideFormatError(
        path,
        f"{n_frames} frames but no DimensionOrganizationType TILED_FULL and no per-frame "
        "positions (PlanePositionSlideSequence): the frame order is unknown; re-export the "
        "slide as TILED_FULL or with per-frame positions",
    )


def _tiled_full(path: Path, ds: Dataset, grid: Grid, n_frames: int) -> Placement:
    keys = optical_path_keys(ds)
    n_paths = count(ds, "NumberOfOpticalPaths", len(keys))
    if n_paths != len(keys):
        raise SlideFormatError(
            path,
            f"NumberOfOpticalPaths={n_paths} but OpticalPathSequence describes {len(keys)}; "
            "the frame order is ambiguous",
        )
    n_focal = count(ds, "TotalPixelMatrixFocalPlanes")
    per_plane = grid.nx * grid.ny
    total = per_plane * n_focal * n_paths
    if not ds.get("ConcatenationUID") and n_frames != total:
        extra = f" x {n_focal} focal planes" if n_focal > 1 else ""
        extra += f" x {n_paths} optical paths" if n_paths > 1 else ""
        raise SlideFormatError(
            path,
            f"NumberOfFrames={n_frames} does not match the {grid.nx}x{grid.ny} tile grid{extra} "
            f"(expected {total} frames); the file is incomplete or mislabelled",
        )
    offset = int(ds.get("ConcatenationFrameOffsetNumber") or 0)  # a concatenation part
    g = np.arange(offset, min(offset + n_frames, total), dtype=np.int64)
    path_index, rest = np.divmod(g, per_plane * n_focal)
    plane, tile = np.divmod(rest, per_plane)
    row, col = np.divmod(tile, grid.nx)
    return Placement(
        "TILED_FULL", g - offset, np.array(keys)[path_index], plane.astype(float), row, col
    )


def _shared(ds: Dataset) -> Dataset:
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    return shared[0] if shared else Dataset()


def _frame_path(path: Path, ds: Dataset, item: Dataset, shared: Dataset, f: int) -> str:
    """The optical path key of frame ``f``: per-frame identification, else shared, else the
    instance's only optical path."""
    for group in (item, shared):
        ident = group.get("OpticalPathIdentificationSequence") or []
        if ident and str(ident[0].get("OpticalPathIdentifier") or "").strip():
            return str(ident[0].OpticalPathIdentifier).strip()
    keys = optical_path_keys(ds)
    if len(keys) == 1:
        return keys[0]
    raise SlideFormatError(
        path,
        f"frame {f} names no optical path (OpticalPathIdentificationSequence) and the file has "
        f"{len(keys)}; the frame's channel is unknown",
    )


def _per_frame(path: Path, ds: Dataset, grid: Grid, per_frame: Any) -> Placement:
    shared = _shared(ds)
    keys, planes, rows, cols = [], [], [], []
    for f, item in enumerate(per_frame):
        pos = item.PlanePositionSlideSequence[0]
        try:
            r = int(pos.RowPositionInTotalImagePixelMatrix) - 1
            c = int(pos.ColumnPositionInTotalImagePixelMatrix) - 1
            z = float(pos.get("ZOffsetInSlideCoordinateSystem") or 0.0)
        except (AttributeError, TypeError, ValueError) as exc:
            raise SlideFormatError(path, f"frame {f} has no readable position: {exc}") from exc
        if r % grid.tile_h or c % grid.tile_w or not (0 <= r < grid.height and 0 <= c < grid.width):
            raise SlideFormatError(path, f"frame {f} at ({c}, {r}) is off the tile grid")
        keys.append(_frame_path(path, ds, item, shared, f))
        planes.append(round(z, 3))  # µm; equal planes written with float noise stay equal
        rows.append(r // grid.tile_h)
        cols.append(c // grid.tile_w)
    return Placement(
        "per-frame positions",
        np.arange(len(keys), dtype=np.int64),
        np.array(keys),
        np.array(planes, float),
        np.array(rows, np.int64),
        np.array(cols, np.int64),
    )


def rank_focal_planes(placements: list[Placement]) -> list[Placement]:
    """One level's placements with each per-frame Z offset replaced by its dense rank among
    the frames of the same optical path and tile (over all the level's instances)."""
    ranked = [i for i, pl in enumerate(placements) if pl.layout == "per-frame positions"]
    if not ranked:
        return placements
    parts = [placements[i] for i in ranked]
    z = np.concatenate([pl.plane for pl in parts])
    _, path_id = np.unique(np.concatenate([pl.path for pl in parts]), return_inverse=True)
    where = [path_id, *(np.concatenate([getattr(pl, a) for pl in parts]) for a in ("row", "col"))]
    _, group = np.unique(np.stack(where, axis=1), axis=0, return_inverse=True)
    order = np.lexsort((z, group))  # by tile, then Z
    g, zs = group[order], z[order]
    group_start = np.r_[True, g[1:] != g[:-1]]
    new_plane = np.cumsum(np.r_[True, zs[1:] != zs[:-1]] | group_start)
    first = new_plane[np.flatnonzero(group_start)]
    counts = np.diff(np.r_[np.flatnonzero(group_start), len(g)])
    rank = np.empty(len(z))
    rank[order] = new_plane - np.repeat(first, counts)
    out, start = list(placements), 0
    for i, pl in zip(ranked, parts, strict=True):
        out[i] = replace(pl, plane=rank[start : start + len(pl.plane)])
        start += len(pl.plane)
    return out


# -- decoding --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=_FRAME_CACHE_SIZE)
def frame(inst: Instance, index: int, window: tuple[float, float] | None = None) -> np.ndarray:
    """Frame ``index`` of ``inst`` as read-only RGB uint8, decoded once per process (LRU).

    ``window`` maps samples of more than 8 bits to uint8 (the slide's, fixed at open).
    """
    rgb = _to_rgb8(inst, samples(inst, index), window)
    rgb.setflags(write=False)
    return rgb


def samples(inst: Instance, index: int) -> np.ndarray:
    """Frame ``index`` of ``inst`` as stored: (h, w) grey (MONOCHROME1 inverted) or (h, w, c)
    RGB, in the file's sample type."""
    try:
        raw, converted = _decode(inst, index)
        return _canonical(inst, raw, converted)
    except (SlideFormatError, SlideReadError):
        raise
    except (pydicom.errors.InvalidDicomError, *LIBRARY_ERRORS) as exc:
        raise SlideReadError(inst.path, f"cannot decode frame {index}: {exc}") from exc


def _decode(inst: Instance, index: int) -> tuple[np.ndarray, bool]:
    """Decoded frame samples, and whether they are already RGB (not YBR)."""
    _locate(inst)
    ts = inst.tsyntax
    if inst.mode == "pydicom":
        return pixel_array(inst.path, index=index), True
    with open(inst.path, "rb") as fp:
        if inst.mode == "native":
            fp.seek(inst.start + index * inst.frame_bytes)
            data = fp.read(inst.frame_bytes)
            if len(data) != inst.frame_bytes:
                raise SlideReadError(inst.path, f"pixel data truncated at frame {index}")
            return _native(inst.ds, data), False
        if inst.mode == "scan":
            fp.seek(inst.start)
            data = get_frame(fp, index, number_of_frames=int(inst.ds.NumberOfFrames))
        else:
            data = _fragments(inst.path, fp, inst.fragments[index])
    if ts in _JPEG:
        decoded = (
            imagecodecs.jpeg8_decode if ts == U.JPEGBaseline8Bit else imagecodecs.jpeg_decode
        )(data)
        return decoded, True  # libjpeg applies the JPEG's own colour transform
    if ts in _JPEGLS:
        return imagecodecs.jpegls_decode(data), False
    return imagecodecs.jpeg2k_decode(data), False  # YBR_ICT/RCT undone by the decoder


def _locate(inst: Instance) -> None:
    """Index where the instance's frames lie in its file (once)."""
    with inst.lock:
        if inst.mode:
            return
        ts, ds = inst.tsyntax, inst.ds
        n_frames = int(ds.NumberOfFrames)
        decodable = ts in _JPEG | _JPEGLS | _J2K or (
            ts in _NATIVE
            and int(ds.get("BitsAllocated", 0)) in (8, 16)
            and str(ds.get("PhotometricInterpretation")) in _NATIVE_PHOTOMETRIC
        )
        if not decodable:
            inst.mode = "pydicom"  # RLE, deflate, big endian, packed bits, 4:2:2 ...
            return
        with open(inst.path, "rb") as fp:
            pydicom.dcmread(fp, stop_before_pixels=True)  # leaves fp at the Pixel Data tag
            head = fp.read(8)
            if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
                raise SlideFormatError(inst.path, "no Pixel Data element (truncated file?)")
            length = struct.unpack("<L", head[4:8] if ts.is_implicit_VR else fp.read(4))[0]
            start = fp.tell()
            if ts in _NATIVE:
                nbytes = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel)
                nbytes *= int(ds.BitsAllocated) // 8
                if length < nbytes * n_frames:
                    raise SlideFormatError(inst.path, "pixel data shorter than its frames")
                inst.start, inst.frame_bytes, inst.mode = start, nbytes, "native"
                return
            bot = parse_basic_offsets(fp)
            first = fp.tell()
            n_fragments, offsets = parse_fragments(fp)
        if n_fragments < n_frames:
            raise SlideReadError(
                inst.path,
                f"pixel data holds {n_fragments} fragments for {n_frames} frames; "
                "the file is truncated",
            )
        if n_fragments == n_frames:
            inst.fragments, inst.mode = [[o] for o in offsets], "encap"
        elif len(bot) == n_frames:
            ends = [*bot[1:], 2**63]
            inst.fragments = [
                [o for o in offsets if b <= o - first < e] for b, e in zip(bot, ends, strict=True)
            ]
            inst.mode = "encap"
        else:
            inst.start, inst.mode = start, "scan"


def _fragments(path: Path, fp: Any, offsets: list[int]) -> bytes:
    parts = []
    for offset in offsets:
        fp.seek(offset)
        head = fp.read(8)
        if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0xFFFE, 0xE000):
            raise SlideReadError(path, f"no fragment item at byte {offset} (corrupt file?)")
        (length,) = struct.unpack("<L", head[4:])
        data = fp.read(length)
        if len(data) != length:
            raise SlideReadError(path, f"fragment at byte {offset} is truncated")
        parts.append(data)
    return b"".join(parts)


def _native(ds: Dataset, data: bytes) -> np.ndarray:
    bits, signed = int(ds.BitsAllocated), int(ds.get("PixelRepresentation") or 0)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    rows, cols, samples = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel)
    arr = np.frombuffer(data, dtype)
    if samples == 1:
        return arr.reshape(rows, cols)
    if int(ds.get("PlanarConfiguration") or 0) == 1:
        return arr.reshape(samples, rows, cols).transpose(1, 2, 0)
    return arr.reshape(rows, cols, samples)


def _top(ds: Dataset) -> int:
    return int(2 ** int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8) - 1)


def _canonical(inst: Instance, arr: np.ndarray, converted: bool) -> np.ndarray:
    ds = inst.ds
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape[:2] != (int(ds.Rows), int(ds.Columns)):
        raise SlideReadError(
            inst.path, f"frame decoded to {arr.shape}, expected {ds.Rows}x{ds.Columns}"
        )
    if np.issubdtype(arr.dtype, np.signedinteger):  # negative samples are black
        arr = np.clip(arr, 0, None).astype(arr.dtype.str.replace("i", "u"))
    if arr.ndim == 2 and photometric == "MONOCHROME1":
        top = _top(ds)
        arr = top - np.minimum(arr, top).astype(arr.dtype)
    elif arr.ndim == 3 and photometric == "YBR_FULL" and not converted:
        arr = convert_color_space(np.ascontiguousarray(arr), "YBR_FULL", "RGB")
    return arr


def _to_rgb8(inst: Instance, arr: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    top = _top(inst.ds)
    if window is None and (arr.dtype != np.uint8 or top < 255):
        window = (0.0, float(top))  # BitsStored range; the slide's window is set at open
    if window is not None:
        arr = to_uint8(arr, window)
    return to_rgb8(arr)
