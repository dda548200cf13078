"""Locating and decoding the frames of one DICOM WSI instance.

The first read of an instance indexes its encapsulated fragments (Basic Offset Table or one
fragment per frame, via ``pydicom.encaps``); a frame is then one seek and one read, decoded with
imagecodecs (JPEG, JPEG-LS, JPEG 2000) or, for RLE and anything unusual,
``pydicom.pixels.pixel_array(path, index=i)``. Decoded frames sit in a small per-process LRU.

JPEG frames are decoded by libjpeg honouring the JPEG's own JFIF/Adobe colour space, not
PhotometricInterpretation (the shared CMU-1 pyramid is YCbCr JPEG labelled RGB).
"""

from __future__ import annotations

import functools
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pydicom
from pydicom import uid as U
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame, parse_basic_offsets, parse_fragments
from pydicom.pixels import convert_color_space, pixel_array

from nucscale.errors import SlideFormatError, SlideReadError
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


# -- decoding --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=_FRAME_CACHE_SIZE)
def frame(inst: Instance, index: int) -> np.ndarray:
    """Frame ``index`` of ``inst`` as read-only RGB uint8, decoded once per process (LRU)."""
    try:
        raw, converted = _decode(inst, index)
        rgb = _to_rgb(inst, raw, converted)
    except (SlideFormatError, SlideReadError):
        raise
    except (pydicom.errors.InvalidDicomError, *LIBRARY_ERRORS) as exc:
        raise SlideReadError(inst.path, f"cannot decode frame {index}: {exc}") from exc
    rgb.setflags(write=False)
    return rgb


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


def _to_rgb(inst: Instance, arr: np.ndarray, converted: bool) -> np.ndarray:
    ds = inst.ds
    photometric = str(ds.get("PhotometricInterpretation", ""))
    top = float(2 ** int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8) - 1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape[:2] != (int(ds.Rows), int(ds.Columns)):
        raise SlideReadError(
            inst.path, f"frame decoded to {arr.shape}, expected {ds.Rows}x{ds.Columns}"
        )
    if np.issubdtype(arr.dtype, np.signedinteger):
        arr = np.clip(arr, 0, None)
    if arr.ndim == 2 and photometric == "MONOCHROME1":
        arr = top - arr.astype(np.float64)
    elif arr.ndim == 3 and photometric == "YBR_FULL" and not converted:
        arr = convert_color_space(np.ascontiguousarray(arr), "YBR_FULL", "RGB")
    if arr.dtype == np.uint8 and top == 255:
        return to_rgb8(arr)
    return to_rgb8(np.clip(arr, 0, top).astype(np.float64) / top)
