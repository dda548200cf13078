"""tifffile backend: the OpenSlide boxes pyramid, and TIFFs written from the real CMU-1 region."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io import open_slide, write_flat_tiff, write_pyramidal_tiff
from nucscale.io._synthetic import downsample2

Psnr = Callable[[np.ndarray, np.ndarray], float]


def test_boxes_tiff_pyramid_matches_png(openslide_fixtures: Path) -> None:
    png = np.asarray(Image.open(openslide_fixtures / "boxes.png").convert("RGB"))
    with open_slide(openslide_fixtures / "boxes.tiff") as slide:
        assert slide.backend == "tifffile"
        assert slide.level_dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
        assert slide.level_downsamples[1] == pytest.approx(2.0)
        assert slide.mpp is None  # 28.3 px/cm = 353 µm/px: not a microscope pixel size
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 300, 250), png)
        np.testing.assert_array_equal(slide.read_region(0, 70, 90, 33, 17), png[90:107, 70:103])
        top = slide.read_region(3, 0, 0, 37, 31)
    assert top.shape == (31, 37, 3)
    assert len(np.unique(top.reshape(-1, 3), axis=0)) > 2  # boxes are still there


def test_unopenable_tiff_refused(openslide_fixtures: Path) -> None:
    with pytest.raises(SlideFormatError, match=r"unopenable\.tiff: TIFF compression 52479"):
        open_slide(openslide_fixtures / "unopenable.tiff")


@pytest.mark.parametrize("ome", [True, False])
def test_generated_pyramid_deflate_is_lossless(
    cmu1_region: np.ndarray, tmp_path: Path, ome: bool
) -> None:
    path = tmp_path / ("slide.ome.tif" if ome else "slide.tif")
    write_pyramidal_tiff(cmu1_region, path, mpp=0.499, tile=128, compression="deflate", ome=ome)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome == ome
        assert len(tif.pages) == 1  # reduced levels live in SubIFDs
        assert len(tif.pages[0].subifds or ()) == 3
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.vendor == ("ome-tiff" if ome else "tiff")
        assert slide.mpp == pytest.approx(0.499)
        assert slide.level_dimensions == ((640, 480), (320, 240), (160, 120), (80, 60))
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 640, 480), cmu1_region)
        level1 = slide.read_region(1, 0, 0, 320, 240)
        np.testing.assert_array_equal(
            slide.read_region(0, 100, 50, 200, 300), cmu1_region[50:350, 100:300]
        )
    np.testing.assert_array_equal(level1, downsample2(cmu1_region))


def test_generated_pyramid_jpeg(cmu1_region: np.ndarray, tmp_path: Path, psnr: Psnr) -> None:
    path = tmp_path / "slide.ome.tif"
    write_pyramidal_tiff(cmu1_region, path, mpp=0.25, compression="jpeg")
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert len(slide.levels) == 3  # 640 -> 320 -> 160 (fits one 256 tile)
        px = slide.read_region(0, 0, 0, 640, 480)
    assert psnr(px, cmu1_region) > 30


def test_reads_only_the_tiles_it_needs(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "slide.tif"
    write_pyramidal_tiff(cmu1_region, path, mpp=0.5, tile=128, compression="deflate", n_levels=1)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[-1], tif.pages[0].databytecounts[-1]
    with open(path, "r+b") as fp:  # corrupt the bottom-right tile
        fp.seek(offset)
        fp.write(b"\x00garbage" * (count // 8))
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 256, 256), cmu1_region[:256, :256])
        with pytest.raises(SlideReadError, match="cannot decode level 0 region"):
            slide.read_region(0, 600, 440, 40, 40)


@pytest.mark.parametrize(("mpp", "expected"), [(0.25, 0.25), (None, None)])
def test_flat_tiff(
    cmu1_region: np.ndarray, tmp_path: Path, mpp: float | None, expected: float | None
) -> None:
    path = tmp_path / "flat.tif"
    write_flat_tiff(cmu1_region, path, mpp=mpp)
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert len(slide.levels) == 1
        assert slide.mpp == (None if expected is None else pytest.approx(expected))
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 640, 480), cmu1_region)


def test_72_dpi_is_not_a_pixel_size(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "screen.tif"
    tifffile.imwrite(
        path, cmu1_region, photometric="rgb", resolution=(72, 72), resolutionunit="INCH"
    )
    with open_slide(path) as slide:
        assert slide.mpp is None
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5


def test_ome_units_are_converted(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "nm.ome.tif"
    meta = {"axes": "YXS", "PhysicalSizeX": 480.0, "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 520.0, "PhysicalSizeYUnit": "nm"}  # fmt: skip
    tifffile.imwrite(path, cmu1_region, photometric="rgb", metadata=meta, tile=(128, 128))
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.5)  # mean of 0.48 and 0.52 µm


def test_sample_layouts_become_rgb(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    grey8 = cmu1_region[:, :, 1]
    grey16 = grey8.astype(np.uint16) * 257  # 255 -> 65535: scaling by the dtype range
    planar = np.moveaxis(cmu1_region, 2, 0)
    alpha = np.full(grey8.shape, 255, np.uint8)
    alpha[:, :100] = 0
    rgba = np.dstack([cmu1_region, alpha])
    cases = {
        "grey8.tif": (grey8, {"photometric": "minisblack"}),
        "grey16.tif": (grey16, {"photometric": "minisblack", "tile": (64, 64)}),
        "planar.tif": (planar, {"photometric": "rgb", "planarconfig": "separate"}),
        "rgba.tif": (rgba, {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
    }
    for name, (data, kwargs) in cases.items():
        tifffile.imwrite(tmp_path / name, data, **kwargs)
    grey_rgb = np.repeat(grey8[:, :, None], 3, axis=2)
    expected_rgba = cmu1_region.copy()
    expected_rgba[:, :100] = 255  # transparent -> glass
    for name, expected in [("grey8.tif", grey_rgb), ("grey16.tif", grey_rgb),
                           ("planar.tif", cmu1_region), ("rgba.tif", expected_rgba)]:  # fmt: skip
        with open_slide(tmp_path / name) as slide:
            px = slide.read_region(0, 0, 0, 640, 480)
        assert px.dtype == np.uint8, name
        np.testing.assert_array_equal(px, expected, err_msg=name)
