"""Plain pictures through Pillow, and the shared RGB conversion."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nucscale.errors import SlideReadError
from nucscale.io import open_slide
from nucscale.io._plain import to_rgb8


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def test_png_jpeg_bmp(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    for name in ("a.png", "a.bmp"):
        Image.fromarray(cmu1_region).save(tmp_path / name)
        with open_slide(tmp_path / name) as slide:
            assert slide.backend == "plain"
            assert slide.levels[0].downsample == 1.0
            np.testing.assert_array_equal(slide.read_region(0, 0, 0, 640, 480), cmu1_region)
    Image.fromarray(cmu1_region).save(tmp_path / "a.jpg", quality=95)
    with open_slide(tmp_path / "a.jpg") as slide:
        assert slide.vendor == "jpeg"
        px = slide.read_region(0, 0, 0, 640, 480)
    assert np.abs(px.astype(int) - cmu1_region).mean() < 3


def test_png_phys_gives_mpp_when_plausible(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    Image.fromarray(cmu1_region).save(tmp_path / "micro.png", dpi=(25400 / 0.5, 25400 / 0.5))
    Image.fromarray(cmu1_region).save(tmp_path / "screen.png", dpi=(72, 72))
    with open_slide(tmp_path / "micro.png") as slide:
        assert slide.mpp == pytest.approx(0.5, rel=1e-3)  # pHYs is stored per metre
    with open_slide(tmp_path / "screen.png") as slide:
        assert slide.mpp is None
    with open_slide(tmp_path / "screen.png", mpp=0.3) as slide:
        assert slide.mpp == 0.3


def test_png_modes(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    grey = cmu1_region[:, :, 0]
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    rgba = np.dstack(
        [cmu1_region, np.where(np.arange(640) < 320, 0, 255).astype(np.uint8)[None].repeat(480, 0)]
    )
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(cmu1_region).convert("P").save(tmp_path / "pal.png")
    with open_slide(tmp_path / "g16.png") as slide:
        np.testing.assert_array_equal(
            slide.read_region(0, 0, 0, 640, 480), np.repeat(grey[:, :, None], 3, 2)
        )
    # a dim 16-bit PNG (values 0-235, an 8-bit camera's data in 16 bits) reads as its 8-bit
    # copy, not black (it was divided by 65535)
    dim = np.minimum(grey, 235)
    Image.fromarray(dim.astype(np.uint16)).save(tmp_path / "dim16.png")
    with open_slide(tmp_path / "dim16.png") as slide:
        px = slide.read_region(0, 0, 0, 640, 480)
        assert slide.read_notes["intensity_range"] == [0.0, 255.0] and slide.bit_depth == 16
    np.testing.assert_array_equal(px, np.repeat(dim[:, :, None], 3, 2))
    with open_slide(tmp_path / "rgba.png") as slide:
        px = slide.read_region(0, 0, 0, 640, 480)
    assert (px[:, :320] == 255).all()
    np.testing.assert_array_equal(px[:, 320:], cmu1_region[:, 320:])
    with open_slide(tmp_path / "pal.png") as slide:
        px = slide.read_region(0, 0, 0, 640, 480)
    np.testing.assert_array_equal(px, np.asarray(Image.open(tmp_path / "pal.png").convert("RGB")))
    assert np.abs(px.astype(int) - cmu1_region).mean() < 25  # 216-colour web palette


def test_large_header_opens_without_pillow_warning(tmp_path: Path) -> None:
    """10000x10000 exceeds Pillow's default bomb limit (89 M) but not nucscale's max_pixels:
    it opens lazily without a DecompressionBombWarning (an error under pytest), and only the
    read fails, because there is no pixel data."""
    path = tmp_path / "big.png"
    ihdr = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 31)  # far too short for the declared size
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    slide = open_slide(path)
    assert slide.dimensions == (10_000, 10_000)
    with pytest.raises(SlideReadError, match=r"big\.png: cannot decode image"):
        slide.read_region(0, 0, 0, 8, 8)


def test_to_rgb8_conversions() -> None:
    grey16 = np.array([[0, 65535], [32768, 257]], np.uint16)
    np.testing.assert_array_equal(to_rgb8(grey16)[:, :, 0], [[0, 255], [128, 1]])
    assert to_rgb8(grey16).shape == (2, 2, 3)
    la = np.array([[[100, 0], [100, 255]]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(la)[0, :, 0], [255, 100])
    half = np.array([[[0, 0, 0, 128]]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(half)[0, 0], [127, 127, 127])
    np.testing.assert_array_equal(to_rgb8(np.array([[0.0, 1.0]]))[0, :, 1], [0, 255])
    np.testing.assert_array_equal(
        to_rgb8(np.array([[10, 4095]], np.uint16), max_value=4095)[0, :, 2], [1, 255]
    )
    with pytest.raises(ValueError, match="2-D or 3-D"):
        to_rgb8(np.zeros((2, 2, 2, 2), np.uint8))
