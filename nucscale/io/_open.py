"""Opening a slide by its content, and the per-process cache the Dask graph reads through.

The backend is chosen from the file's first bytes, not its name: a PNG named ``.svs`` is read
as a PNG, a text file named ``.svs`` is refused with a clear error.

======================================  ==================================================
content                                 reader
======================================  ==================================================
folder holding ``.zattrs``, ``.zgroup``,  :class:`~nucscale.io._omezarr.OmeZarrSlide`
``.zarray`` or ``zarr.json``            (OME-Zarr / NGFF 0.4 and 0.5, bioformats2raw)
other folder, or ``DICM`` at byte 128   :class:`~nucscale.io._dicom.DicomSlide` (never
                                        OpenSlide: it shows false colours on YCbCr frames)
anything OpenSlide detects as a vendor  :class:`~nucscale.io._openslide.OpenSlideSlide`
format (aperio, hamamatsu, mirax, ...)
other TIFF / BigTIFF                    :class:`~nucscale.io._tiff.TiffSlide`
PNG, JPEG, BMP, GIF, WebP               :class:`~nucscale.io._plain.PlainSlide`
======================================  ==================================================
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import openslide

from nucscale.errors import (
    InputError,
    NucscaleError,
    SlideFormatError,
    SlideNotFoundError,
    SlideReadError,
)
from nucscale.io._base import Slide
from nucscale.io._omezarr import OmeZarrSlide, is_zarr_folder
from nucscale.io._openslide import OpenSlideSlide
from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.io._plain import PlainSlide
from nucscale.io._tiff import TiffSlide

log = logging.getLogger(__name__)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PLAIN_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_NOT_VENDOR = {None, "generic-tiff", "dicom"}
_CACHE_SIZE = 16


def sniff(path: str | os.PathLike[str]) -> str:
    """Name the reader for ``path`` from its content: dicom, openslide, tifffile or plain.

    Raises
    ------
    SlideNotFoundError
        ``path`` does not exist.
    SlideFormatError
        ``path`` is empty or not a slide or picture nucscale can read.
    """
    p = Path(path)
    if not p.exists():
        raise SlideNotFoundError(p, "no such file or folder; check the path")
    if p.is_dir():
        return "omezarr" if is_zarr_folder(p) else "dicom"
    try:
        with open(p, "rb") as fp:
            head = fp.read(132)
    except PermissionError as exc:
        raise SlideReadError(p, "permission denied; check the file's permissions") from exc
    except OSError as exc:
        raise SlideReadError(p, f"cannot read the file: {exc}") from exc
    if not head:
        raise SlideFormatError(p, "empty file (0 bytes); the copy or download is incomplete")
    if head[128:132] == b"DICM":
        return "dicom"
    try:
        vendor = openslide.OpenSlide.detect_format(p)
    except (openslide.OpenSlideError, OSError, ValueError) as exc:
        log.debug("%s: openslide detect_format failed: %s", p, exc)
        vendor = None
    if vendor == "dicom":  # DICOM without the 128-byte preamble
        return "dicom"
    if vendor not in _NOT_VENDOR:
        return "openslide"
    if head.startswith(_TIFF_MAGIC):
        return "tifffile"
    if any(head.startswith(magic) for magic, _ in _PLAIN_MAGIC) or _is_webp(head):
        return "plain"
    raise SlideFormatError(p, f"{_what_is_it(head)}; {_EXPECTED}")


_EXPECTED = (
    "expected a whole-slide image (SVS, NDPI, MRXS, SCN, OME-TIFF, tiled TIFF, DICOM WSI, "
    "OME-Zarr) or a picture (PNG, JPEG, BMP)"
)


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _what_is_it(head: bytes) -> str:
    if head.startswith((b"PK\x03\x04",)):
        return "not a slide: a ZIP archive (unpack it first)"
    if head.startswith(b"\x1f\x8b"):
        return "not a slide: a gzip file (decompress it first)"
    if head.startswith(b"%PDF"):
        return "not a slide: a PDF document"
    try:
        text = head[:128].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text):
        return "not a slide: a text file, not TIFF, DICOM, PNG, JPEG or BMP"
    return f"not a slide: unknown binary content (starts with {head[:8]!r})"


_READERS: dict[str, type[Slide]] = {
    "openslide": OpenSlideSlide,
    "tifffile": TiffSlide,
    "plain": PlainSlide,
    "omezarr": OmeZarrSlide,
}


def _reader(kind: str) -> type[Slide]:
    """The reader class of a sniffed ``kind``. The DICOM reader is imported when a DICOM slide
    is opened: pydicom and what it imports (requests, for its test data) were 0.07 s of the
    start of every process that opens slides, the workers' included."""
    if kind == "dicom":
        from nucscale.io._dicom import DicomSlide

        return DicomSlide
    return _READERS[kind]


def open_slide(
    path: str | os.PathLike[str], *, mpp: float | None = None, options: ReadOptions = DEFAULT
) -> Slide:
    """Open a slide or picture, choosing the reader from the file's content.

    Parameters
    ----------
    path:
        A slide file, a picture, or a DICOM WSI folder (a DICOM slide may also be given as any
        one of its files).
    mpp:
        Pixel size of level 0 in µm/px; overrides what the file says (or supplies it when the
        file says nothing).
    options:
        The user's read choices (nuclear channel, intensity range, Z plane); default: decided
        by the documented rules (:mod:`nucscale.io._options`).

    Returns
    -------
    Slide
        An open slide; use it as a context manager or call ``close()``.

    Raises
    ------
    SlideNotFoundError
        The path does not exist.
    SlideFormatError
        Empty, truncated or unknown content, or a DICOM that is not a whole-slide image.
    SlideReadError
        The file could not be read (permissions, I/O error).
    """
    p = Path(path)
    if mpp is not None and not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise InputError(p, f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    kind = sniff(p)
    reader: Any = _reader(kind)
    try:
        slide: Slide = reader(p, mpp=None if mpp is None else float(mpp), options=options)
    except NucscaleError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # adapter boundary: no raw library traceback reaches the user
        raise SlideFormatError(
            p, f"cannot open as {kind}: {type(exc).__name__}: {exc}; the file may be corrupt"
        ) from exc
    log.debug("opened %s with %s", p, kind)
    return slide


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_slide(path: str, options: ReadOptions) -> Slide:
    return open_slide(path, options=options)


def read_region_cached(
    path: str,
    level: int,
    x: int,
    y: int,
    w: int,
    h: int,
    options: ReadOptions = DEFAULT,
    fill: int | None = None,
) -> np.ndarray:
    """Read a region through a per-process cache of open slides (keyed by path and options).

    This is what Dask tasks call: the graph carries the path and the read options, and each
    worker process opens a slide once and reuses it. Arguments are those of
    :meth:`Slide.read_region` (``fill``: the value beyond the image), plus the
    :class:`~nucscale.io._options.ReadOptions` the plan opened the slide with.

    Returns
    -------
    numpy.ndarray
        RGB uint8 (h, w, 3); outside the image is white.
    """
    return _cached_slide(str(path), options).read_region(level, x, y, w, h, fill)


def clear_slide_cache() -> None:
    """Forget every slide opened by :func:`read_region_cached` in this process."""
    _cached_slide.cache_clear()


def slide_info(slide: Slide) -> dict[str, Any]:
    """Describe a slide for ``nucscale info``: path, backend, vendor, mpp, levels, and how its
    samples are read (channels, bit depth, dimensions, the read choices made).

    Returns
    -------
    dict
        ``{"path", "backend", "vendor", "mpp", "levels": [{"width", "height", "downsample"}],
        "bit_depth", "dims", "channels": [{"index", "name", "description", "emission_nm",
        "excitation_nm"}], "read": {...}}`` with plain Python values (JSON-serialisable).
    """
    return {
        "path": str(slide.path),
        "backend": slide.backend,
        "vendor": slide.vendor,
        "mpp": None if slide.mpp is None else float(slide.mpp),
        "levels": [
            {"width": int(lv.width), "height": int(lv.height), "downsample": float(lv.downsample)}
            for lv in slide.levels
        ],
        "bit_depth": slide.bit_depth,
        "dims": dict(slide.dims),
        "channels": [dataclasses.asdict(ch) for ch in slide.channels],
        "read": dict(slide.read_notes),
    }
