"""Plain pictures (PNG, JPEG, BMP, ...) as one-level slides, and pixel conversions to RGB uint8.

A plain image has no tiles, so it is decoded whole on the first read and kept. To keep that
safe, the size in the header is checked against ``Settings.max_pixels`` (a pixel count)
*before* any pixel is decoded; a crafted header claiming 100000×100000 pixels is refused at
open. PNG and BMP sizes are read from the header bytes directly; other formats through
Pillow's lazy ``Image.open``. Because this check replaces Pillow's decompression-bomb guard,
opening a plain image raises the process-wide ``PIL.Image.MAX_IMAGE_PIXELS`` to
``max_pixels`` (never lowers it), so images nucscale accepts do not trigger
``DecompressionBombWarning``.

:func:`to_rgb8` is the one place where readers turn decoded samples into RGB uint8; the TIFF
and DICOM readers use it too.
"""

from __future__ import annotations

import logging
import struct
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nucscale.config import Settings
from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io._base import Level, Slide
from nucscale.io._intensity import describe, to_uint8, window_of
from nucscale.io._options import DEFAULT, ReadOptions

log = logging.getLogger(__name__)

#: µm/px range accepted from resolution metadata; outside it the value is a screen default
#: (72 dpi = 353 µm/px) or garbage, not a pixel size.
PLAUSIBLE_MPP = (0.01, 50.0)


def plausible_mpp(value: float | None) -> float | None:
    """``value`` when it is a believable microscope pixel size in µm/px, else ``None``."""
    if value is None or not np.isfinite(value):
        return None
    return float(value) if PLAUSIBLE_MPP[0] <= value <= PLAUSIBLE_MPP[1] else None


def to_rgb8(arr: np.ndarray, *, max_value: float | None = None) -> np.ndarray:
    """Convert decoded samples to RGB uint8 (h, w, 3).

    Parameters
    ----------
    arr:
        (h, w) greyscale or (h, w, c) with c = 1 (grey), 2 (grey + alpha), 3 (RGB) or
        4 (RGBA); more channels keep the first three.
    max_value:
        The sample value that maps to 255. Defaults to the top of the dtype's range
        (65535 for uint16), i.e. 16-bit data is scaled by its dtype range, not stretched to its
        own min/max, so the same value always gives the same grey. Floats are taken as 0..1.

    Returns
    -------
    numpy.ndarray
        C-contiguous uint8 (h, w, 3). Alpha is composited on white (the colour of glass).
    """
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = _scale_to_uint8(arr, max_value)
    c = arr.shape[2]
    alpha = None
    if c in (2, 4):
        alpha = arr[:, :, -1]
        arr = arr[:, :, :-1]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] > 3:
        arr = arr[:, :, :3]
    if alpha is not None and (alpha < 255).any():
        a = alpha[:, :, None].astype(np.float32) / 255.0
        arr = np.rint(arr * a + 255.0 * (1.0 - a)).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _scale_to_uint8(arr: np.ndarray, max_value: float | None) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if max_value is None else float(max_value)
    elif np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max) if max_value is None else float(max_value)
    else:
        raise ValueError(f"unsupported sample type {arr.dtype}")
    scaled = np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255)
    return np.rint(scaled).astype(np.uint8)


class PlainSlide(Slide):
    """A single-level picture read with Pillow; decoded whole on first read."""

    backend = "plain"

    def __init__(
        self, path: str | Path, *, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        super().__init__(path, mpp, options)
        limit = Settings.from_env().max_pixels
        # Our own size check below replaces Pillow's decompression-bomb guard up to `limit`.
        if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = limit
        self._check_size(_declared_size(self.path), limit)
        try:
            with Image.open(self.path) as img:
                width, height = img.size
                self._format = img.format or "image"
                self._vendor = self._format.lower()
                dpi = img.info.get("dpi")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # (the warning arrives as an exception only where warnings are errors)
            raise SlideFormatError(
                self.path, f"image header claims too many pixels to decode ({exc})"
            ) from exc
        except UnidentifiedImageError as exc:
            raise SlideFormatError(
                self.path, "not an image Pillow can read (PNG, JPEG, BMP, ...)"
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise SlideFormatError(self.path, f"cannot read image header: {exc}") from exc
        if width <= 0 or height <= 0:
            raise SlideFormatError(self.path, f"image has no pixels ({width}x{height})")
        self._check_size((width, height), limit)
        self._levels = (Level(width, height, 1.0),)
        self._file_mpp = _mpp_from_dpi(dpi)
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def _check_size(self, size: tuple[int, int] | None, limit: int) -> None:
        if size is None or size[0] * size[1] <= limit:
            return
        width, height = size
        raise SlideFormatError(
            self.path,
            f"image header claims {width}x{height} = {width * height:,} pixels "
            f"({width * height * 3 / 2**30:.1f} GiB as RGB), too many pixels to decode "
            f"(max_pixels={limit:,}); convert it to a tiled pyramidal TIFF or raise "
            "NUCSCALE_MAX_PIXELS",
        )

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        pixels = self._decoded()
        return pixels[y : y + h, x : x + w].copy()

    def _decoded(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                self._pixels = self._decode()
            return self._pixels

    def _decode(self) -> np.ndarray:
        try:
            with Image.open(self.path) as img:
                img.load()
                arr = _pil_to_array(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise SlideReadError(self.path, f"cannot decode image: {exc}") from exc
        if arr.dtype != np.uint8 and arr.dtype != np.bool_:
            # 16-bit pictures: one window for the whole image (nucscale.io._intensity)
            arr = arr.astype(np.uint16) if arr.dtype == np.int32 else arr
            self.bit_depth = int(arr.dtype.itemsize * 8)
            window = window_of(arr, override=self.options.intensity)
            source = "--intensity-range" if self.options.intensity else "rule: bit depth used"
            self.read_notes.update(describe(window, source))
            arr = to_uint8(arr, window)
        rgb = to_rgb8(arr)
        lv = self._levels[0]
        if rgb.shape[:2] != (lv.height, lv.width):
            raise SlideReadError(self.path, f"decoded shape {rgb.shape} differs from header")
        rgb.setflags(write=False)
        return rgb


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Pillow image as an array to_rgb8 understands (16-bit greyscale kept as integers)."""
    if img.mode in ("RGB", "RGBA", "L", "LA", "I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if img.mode == "I":  # 16-bit PNGs open as 32-bit "I"; values are 0..65535
            arr = np.clip(arr, 0, 65535)
        return arr
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode == "P" and "transparency" in img.info:
        return np.asarray(img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def _declared_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a BMP's info header, read without Pillow."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(26)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(int(width)), abs(int(height))
    return None


def _mpp_from_dpi(dpi: object) -> float | None:
    """µm/px from Pillow's ``dpi`` info (PNG pHYs in metres, JFIF density), when plausible."""
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None
    try:
        dx, dy = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if dx <= 0 or dy <= 0:
        return None
    return plausible_mpp((25400.0 / dx + 25400.0 / dy) / 2)
