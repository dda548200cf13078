"""open_slide: content sniffing, bad inputs, the per-process cache, to_dask and slide_info."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from PIL import Image

from nucscale.errors import (
    InputError,
    SlideFormatError,
    SlideNotFoundError,
    SlideReadError,
)
from nucscale.io import open_slide, read_region_cached, slide_info
from nucscale.io._open import clear_slide_cache, sniff


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG signature and an IHDR chunk (8-bit RGB) claiming width x height, no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + crc)


# -- choosing the reader by content ---------------------------------------------------------------
def test_sniff_names_the_reader(cmu1_svs: Path, cmu1_dicom: Path, openslide_fixtures: Path) -> None:
    assert sniff(cmu1_svs) == "openslide"
    assert sniff(cmu1_dicom) == "dicom"
    assert sniff(cmu1_dicom / "level-2-frames-0-4.dcm") == "dicom"  # not openslide's "dicom"
    assert sniff(openslide_fixtures / "boxes.tiff") == "tifffile"  # generic-tiff
    assert sniff(openslide_fixtures / "boxes.png") == "plain"


def test_png_named_svs_is_read_as_png(openslide_fixtures: Path, tmp_path: Path) -> None:
    fake = tmp_path / "slide.svs"
    shutil.copy(openslide_fixtures / "boxes.png", fake)
    with open_slide(fake) as slide:
        assert slide.backend == "plain"
        assert slide.dimensions == (300, 250)
        px = slide.read_region(0, 0, 0, 300, 250)
    np.testing.assert_array_equal(px, np.asarray(Image.open(fake).convert("RGB")))


def test_text_named_svs_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "slide.svs"
    fake.write_text("patient,slide\n1,a.svs\n")
    with pytest.raises(SlideFormatError, match=r"slide\.svs: not a slide: a text file, not TIFF"):
        open_slide(fake)


def test_unknown_binary_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "blob.bin"
    fake.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SlideFormatError, match="unknown binary content"):
        open_slide(fake)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFoundError, match=r"nope\.svs: no such file"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(FileNotFoundError):  # the builtin works too
        open_slide(tmp_path / "nope.svs")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(SlideFormatError, match=r"empty\.svs: empty file \(0 bytes\)"):
        open_slide(tmp_path / "empty.svs")


def test_truncated_svs(cmu1_svs: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.svs"
    cut.write_bytes(cmu1_svs.read_bytes()[:4096])
    with (
        pytest.raises((SlideFormatError, SlideReadError), match=r"cut\.svs: ") as info,
        open_slide(cut) as slide,
    ):
        slide.read_region(0, 0, 0, 256, 256)
    assert "\n" not in str(info.value)  # one line


def test_half_an_svs_names_tifffile_s_reason_in_the_error_only(
    cmu1_svs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tifffile warns about the missing first page through logging, without the file name (a
    worker prints that line on the console); the reason belongs in the error that names it."""
    raw = cmu1_svs.read_bytes()
    half = tmp_path / "half.svs"
    half.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SlideFormatError) as info:
        open_slide(half)
    assert str(info.value).startswith(f"{half}: TIFF holds no image (tifffile: invalid offset")
    assert not [r for r in caplog.records if r.name == "tifffile"]


def test_absurd_png_header_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    _png_header_only(path, 100_000, 100_000)
    assert path.stat().st_size == 33  # nothing to decode: refusal comes from the header
    with pytest.raises(SlideFormatError, match=r"huge\.png: .*too many pixels"):
        open_slide(path)


def test_max_pixels_setting_is_honoured(
    openslide_fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUCSCALE_MAX_PIXELS", "10000")  # boxes.png is 300x250 = 75,000
    with pytest.raises(SlideFormatError, match=r"too many pixels to decode \(max_pixels=10,000\)"):
        open_slide(openslide_fixtures / "boxes.png")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_bad_mpp_override(cmu1_svs: Path, bad: float) -> None:
    with pytest.raises(InputError, match="mpp must be a positive number"):
        open_slide(cmu1_svs, mpp=bad)


@pytest.mark.parametrize("name", ["slide with spaces.tif", "préparation_µm_😐.tif"])
def test_unusual_file_names(openslide_fixtures: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(openslide_fixtures / "boxes.tiff", path)
    with open_slide(path) as slide:
        assert slide.path == path
        assert slide.level_dimensions[0] == (300, 250)
        direct = slide.read_region(0, 10, 10, 50, 40)
    np.testing.assert_array_equal(read_region_cached(str(path), 0, 10, 10, 50, 40), direct)


def test_unusual_names_for_openslide_and_dicom(
    openslide_fixtures: Path, highdicom_dir: Path, tmp_path: Path
) -> None:
    svs = tmp_path / "ça va 😐.svs"
    shutil.copy(openslide_fixtures / "small.svs", svs)
    (tmp_path / "dicom dir é").mkdir()
    dcm = tmp_path / "dicom dir é" / "tranche n°1.dcm"
    shutil.copy(highdicom_dir / "sm_image.dcm", dcm)
    with open_slide(svs) as slide:
        assert slide.backend == "openslide"
        assert slide.read_region(0, 0, 0, 16, 16).mean() < 250
    with open_slide(dcm.parent) as slide:
        assert slide.backend == "dicom"
        assert slide.dimensions == (50, 50)


# -- cache, dask, info ----------------------------------------------------------------------------
def test_read_region_cached_reuses_the_slide(openslide_fixtures: Path) -> None:
    from nucscale.io._open import _cached_slide

    clear_slide_cache()
    path = str(openslide_fixtures / "boxes.tiff")
    a = read_region_cached(path, 1, 0, 0, 150, 125)
    b = read_region_cached(path, 1, -5, -5, 20, 20)
    assert _cached_slide.cache_info().hits == 1
    assert _cached_slide.cache_info().misses == 1
    assert a.shape == (125, 150, 3)
    np.testing.assert_array_equal(b[5:, 5:], a[:15, :15])
    assert (b[:5] == 255).all()
    clear_slide_cache()


@pytest.mark.parametrize("which", ["boxes.tiff", "boxes_0.dcm", "small.svs"])
def test_to_dask_equals_read_region(openslide_fixtures: Path, which: str) -> None:
    with open_slide(openslide_fixtures / which) as slide:
        level = len(slide.levels) - 1 if which == "boxes.tiff" else 0
        w, h = slide.level_dimensions[level]
        arr = slide.to_dask(level=level, chunk=7)
        expected = slide.read_region(level, 0, 0, w, h)
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8
    assert arr.numblocks[0] > 1
    restored = cloudpickle.loads(cloudpickle.dumps(arr))  # paths, not file handles
    np.testing.assert_array_equal(restored.compute(scheduler="threads"), expected)


def test_padding_outside_every_backend_is_white(
    cmu1_svs: Path, cmu1_dicom: Path, openslide_fixtures: Path
) -> None:
    for path in (
        cmu1_svs,
        cmu1_dicom,
        openslide_fixtures / "boxes.tiff",
        openslide_fixtures / "boxes.png",
    ):
        with open_slide(path) as slide:
            w, h = slide.dimensions
            outside = slide.read_region(0, w + 10, h + 10, 32, 32)
            corner = slide.read_region(0, w - 8, h - 8, 16, 16)
            inside = slide.read_region(0, w - 8, h - 8, 8, 8)
        assert (outside == 255).all(), path
        np.testing.assert_array_equal(corner[:8, :8], inside)
        assert (corner[8:] == 255).all() and (corner[:, 8:] == 255).all()


def test_slide_info_is_json(cmu1_dicom: Path) -> None:
    with open_slide(cmu1_dicom) as slide:
        info = slide_info(slide)
    text = json.dumps(info)
    assert json.loads(text)["backend"] == "dicom"
    assert info["path"] == str(cmu1_dicom)
    assert info["vendor"] is None  # the converter wrote no Manufacturer
    assert info["mpp"] == pytest.approx(0.499)
    assert len(info["levels"]) == 12
    assert info["levels"][0] == {"width": 2220, "height": 2967, "downsample": 1.0}
