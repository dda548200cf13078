"""TIFF / OME-TIFF read right or refused: the nuclear channel, more than 8 bits, Z and T.

Every image here is built from real pixels: a DSB 2018 fluorescence field (its nuclei, the
"DAPI" channel) and the real CMU-1 region (the other channels: whole-cell-like signal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucscale.errors import SlideFormatError
from nucscale.io import ReadOptions, open_slide, slide_info

FLUO_ID = "519dc0d672d1"  # a DSB 2018 fluorescence field


@pytest.fixture(scope="module")
def planes(dsb2018: Path, cmu1_region: np.ndarray) -> dict[str, np.ndarray]:
    """Three (h, w) uint8 planes of one size: nuclei, and two whole-tissue signals."""
    nuclei = np.asarray(Image.open(dsb2018 / f"{FLUO_ID}_image.png").convert("L"))
    h, w = min(nuclei.shape[0], 480), min(nuclei.shape[1], 640)
    cyto = 255 - cmu1_region[:h, :w, 1]  # tissue bright on dark, as a cytoplasm stain
    membrane = 255 - cmu1_region[:h, :w, 0]
    return {"nuclei": nuclei[:h, :w].copy(), "cyto": cyto.copy(), "membrane": membrane.copy()}


def _grey(px: np.ndarray) -> np.ndarray:
    assert px.ndim == 3 and px.shape[2] == 3
    assert np.array_equal(px[:, :, 0], px[:, :, 2])
    return px[:, :, 0]


def _read(path: Path, options: ReadOptions | None = None) -> np.ndarray:
    with open_slide(path, options=options or ReadOptions()) as slide:
        h, w = slide.dimensions[1], slide.dimensions[0]
        return _grey(slide.read_region(0, 0, 0, w, h))


def _ome(path: Path, stack: np.ndarray, axes: str, **channel: list) -> Path:
    meta = {"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    if channel:
        meta["Channel"] = channel
    tifffile.imwrite(path, stack, ome=True, metadata=meta)
    return path


def test_channel_named_dapi_is_read_not_the_first(
    tmp_path: Path, planes: dict[str, np.ndarray]
) -> None:
    stack = np.stack([planes["cyto"], planes["membrane"], planes["nuclei"]])
    path = _ome(tmp_path / "named.ome.tif", stack, "CYX", Name=["Phalloidin", "WGA", "DAPI"])
    np.testing.assert_array_equal(_read(path), planes["nuclei"])
    with open_slide(path) as slide:
        info = slide_info(slide)
    assert [c["name"] for c in info["channels"]] == ["Phalloidin", "WGA", "DAPI"]
    assert info["read"]["channel"] == "2: 'DAPI'"
    assert info["read"]["channel_rule"] == "named as a nuclear stain"
    assert info["dims"] == {"t": 1, "c": 3, "z": 1}


def test_blue_emission_decides_when_names_do_not(
    tmp_path: Path, planes: dict[str, np.ndarray]
) -> None:
    stack = np.stack([planes["cyto"], planes["nuclei"], planes["membrane"]])
    path = _ome(
        tmp_path / "waves.ome.tif",
        stack,
        "CYX",
        Name=["Green", "Ch2", "Far red"],
        EmissionWavelength=[520, 461, 670],
    )
    np.testing.assert_array_equal(_read(path), planes["nuclei"])


def test_undecidable_channels_are_refused_listing_them(
    tmp_path: Path, planes: dict[str, np.ndarray]
) -> None:
    stack = np.stack([planes["cyto"], planes["nuclei"], planes["membrane"]])
    path = _ome(tmp_path / "abc.ome.tif", stack, "CYX", Name=["A", "B", "C"])
    with pytest.raises(SlideFormatError) as err:
        open_slide(path)
    text = str(err.value)
    assert str(path) in text and "0: 'A'; 1: 'B'; 2: 'C'" in text and "--channel" in text
    assert "\n" not in text
    # the user decides, by name or index
    np.testing.assert_array_equal(_read(path, ReadOptions(channel="B")), planes["nuclei"])
    np.testing.assert_array_equal(_read(path, ReadOptions(channel="1")), planes["nuclei"])
    with pytest.raises(SlideFormatError, match="--channel 'D' matches no channel"):
        open_slide(path, options=ReadOptions(channel="D"))
    # samples of a plain TIFF carry no names at all: refused too, never "channel 0"
    plain = tmp_path / "three.tif"
    tifffile.imwrite(plain, stack, photometric="minisblack", planarconfig="separate")
    with pytest.raises(SlideFormatError, match="3 channels"):
        open_slide(plain)
    np.testing.assert_array_equal(_read(plain, ReadOptions(channel="1")), planes["nuclei"])


def test_sixteen_bit_camera_data_reads_like_its_eight_bit_copy(
    tmp_path: Path, planes: dict[str, np.ndarray]
) -> None:
    """A dim field (values 0-121) in a 16-bit file: exactly its 8-bit copy (dividing by 65535
    gave black)."""
    eight = planes["nuclei"]
    assert 100 < eight.max() < 255
    tifffile.imwrite(tmp_path / "u8.tif", eight, photometric="minisblack")
    tifffile.imwrite(tmp_path / "u16.tif", eight.astype(np.uint16), photometric="minisblack")
    np.testing.assert_array_equal(_read(tmp_path / "u16.tif"), _read(tmp_path / "u8.tif"))
    with open_slide(tmp_path / "u16.tif") as slide:
        info = slide_info(slide)
    assert info["bit_depth"] == 16
    assert info["read"]["intensity_range"] == [0.0, 255.0]
    # a 12-bit camera (values up to 3993): 0..4095 maps to 0..255
    twelve = eight.astype(np.uint16) * 33
    assert 2047 < twelve.max() <= 4095
    tifffile.imwrite(tmp_path / "u12.tif", twelve, photometric="minisblack")
    expected = np.rint(twelve.astype(np.float64) * 255 / 4095).astype(np.uint8)
    assert np.abs(_read(tmp_path / "u12.tif").astype(int) - expected).max() <= 1
    # the user's range wins
    custom = _read(tmp_path / "u16.tif", ReadOptions(intensity=(0, 100)))
    expected = np.minimum(eight, 100) * 2.55
    assert np.abs(custom - expected).max() <= 0.5 + 1e-3  # rounding of a .5 in float32
    # floats: the slide's own 0.1-99.9th percentiles
    tifffile.imwrite(tmp_path / "f32.tif", eight.astype(np.float32) / 1000.0)
    px = _read(tmp_path / "f32.tif")
    assert px.max() == 255 and np.corrcoef(px.ravel(), eight.ravel())[0, 1] > 0.99


def test_z_stacks_need_a_choice_and_time_series_are_refused(
    tmp_path: Path, planes: dict[str, np.ndarray]
) -> None:
    dim = (planes["nuclei"] // 2).astype(np.uint8)
    stack = np.stack([dim, planes["nuclei"], dim])[:, None]  # Z, C=1, Y, X
    path = _ome(tmp_path / "z.ome.tif", stack, "ZCYX")
    with pytest.raises(SlideFormatError, match=r"3 focal planes .*--z INDEX \(0-2\) or --z max"):
        open_slide(path)
    np.testing.assert_array_equal(_read(path, ReadOptions(z="1")), planes["nuclei"])
    np.testing.assert_array_equal(_read(path, ReadOptions(z="0")), dim)
    np.testing.assert_array_equal(_read(path, ReadOptions(z="max")), planes["nuclei"])
    with pytest.raises(SlideFormatError, match="--z 3: the stack has 3 planes"):
        open_slide(path, options=ReadOptions(z="3"))
    series = _ome(tmp_path / "t.ome.tif", stack[:2], "TCYX")
    with pytest.raises(SlideFormatError, match="2 time points"):
        open_slide(series)
    single = _ome(tmp_path / "z1.ome.tif", stack[1:2], "ZCYX")
    np.testing.assert_array_equal(_read(single), planes["nuclei"])
