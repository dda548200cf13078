"""OpenSlide backend on the real Aperio files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from nucscale.errors import SlideReadError
from nucscale.io import open_slide, slide_info


def test_cmu1_svs_metadata(cmu1_svs: Path) -> None:
    with open_slide(cmu1_svs) as slide:
        assert slide.backend == "openslide"
        assert slide.vendor == "aperio"
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        assert len(slide.levels) == 1
        info = slide_info(slide)
    assert info == {
        "path": str(cmu1_svs),
        "backend": "openslide",
        "vendor": "aperio",
        "mpp": pytest.approx(0.499),
        "levels": [{"width": 2220, "height": 2967, "downsample": 1.0}],
        "bit_depth": 8,  # RGB, 8 bits per sample: read as it is, no channel choice
        "dims": {},
        "channels": [],
        "read": {},
    }


def test_cmu1_svs_region_matches_openslide(cmu1_svs: Path, cmu1_region: np.ndarray) -> None:
    with open_slide(cmu1_svs) as slide:
        region = slide.read_region(0, 400, 600, 640, 480)
    assert region.dtype == np.uint8
    assert region.shape == (480, 640, 3)
    np.testing.assert_array_equal(region, cmu1_region)
    assert region.std() > 10  # tissue, not background


def test_small_svs(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "small.svs") as slide:
        assert slide.backend == "openslide"
        assert slide.dimensions == (16, 16)
        assert slide.mpp == pytest.approx(0.499)
        px = slide.read_region(0, 0, 0, 16, 16)
        ref = np.asarray(
            openslide.OpenSlide(openslide_fixtures / "small.svs").read_region((0, 0), 0, (16, 16))
        )
    np.testing.assert_array_equal(px, ref[:, :, :3])


def test_small_svs_padding_is_white(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "small.svs") as slide:
        px = slide.read_region(0, -4, 10, 12, 12)
        inner = slide.read_region(0, 0, 10, 8, 6)
    assert px.shape == (12, 12, 3)
    assert (px[:, :4] == 255).all()  # left of the image
    assert (px[6:] == 255).all()  # below the image
    np.testing.assert_array_equal(px[:6, 4:], inner)


def test_unreadable_svs_raises_read_error(openslide_fixtures: Path) -> None:
    slide = open_slide(openslide_fixtures / "unreadable.svs")
    assert slide.dimensions == (16, 16)  # the header is fine ...
    with pytest.raises(SlideReadError, match=r"unreadable\.svs: cannot decode"):
        slide.read_region(0, 0, 0, 16, 16)  # ... the tile data is not
    with pytest.raises(OSError, match="cannot decode"):  # also an OSError for callers
        slide.read_region(0, 0, 0, 8, 8)
    slide.close()


def test_mpp_override(cmu1_svs: Path) -> None:
    with open_slide(cmu1_svs, mpp=0.25) as slide:
        assert slide.mpp == 0.25
        assert slide.level_mpp(0) == 0.25


def test_level_coordinates_are_scaled_to_level0(openslide_fixtures: Path) -> None:
    """OpenSlide takes level-0 coordinates; the Slide interface takes level coordinates."""
    from nucscale.io._openslide import OpenSlideSlide
    from nucscale.io._tiff import TiffSlide

    path = openslide_fixtures / "boxes.tiff"  # generic TIFF: OpenSlide reads it too
    with OpenSlideSlide(path) as osr, TiffSlide(path) as tif:
        assert osr.level_dimensions == tif.level_dimensions
        assert osr.vendor == "generic-tiff"
        np.testing.assert_array_equal(
            osr.read_region(1, 10, 20, 30, 25), tif.read_region(1, 10, 20, 30, 25)
        )
        # Level 2 has downsample 4.016: OpenSlide renders the level-0 position 40.16 -> 40
        # with a sub-pixel shift, so edges differ slightly but the content is the same place.
        a = osr.read_region(2, 10, 20, 30, 25).astype(int)
        b = tif.read_region(2, 10, 20, 30, 25).astype(int)
        assert np.abs(a - b).mean() < 2
        assert np.abs(a[:, 1:] - b[:, :-1]).mean() > np.abs(a - b).mean()  # not shifted by 1 px


def _write_minimal_ndpi(rgb: np.ndarray, path: Path, mpp: float) -> None:
    """A one-page JPEG TIFF with the Hamamatsu NDPI private tags OpenSlide looks for.

    No small real NDPI is redistributable; this checks routing by content and the OpenSlide
    adapter, not Hamamatsu's own files.
    """
    tags = [
        (65420, 4, 1, 1, True),  # NDPI format flag
        (65421, 11, 1, 20.0, True),  # source lens (objective power)
        (65422, 3, 1, 0, True),  # x offset from slide centre
        (65423, 3, 1, 0, True),  # y offset
        (65424, 8, 1, 0, True),  # focal plane (signed)
    ]
    per_cm = 1e4 / mpp
    tifffile.imwrite(
        path, rgb, photometric="rgb", compression="jpeg", compressionargs={"level": 95},
        resolution=(per_cm, per_cm), resolutionunit="CENTIMETER", extratags=tags,
        rowsperstrip=rgb.shape[0],  # NDPI: one JPEG strip per page
    )  # fmt: skip


def test_ndpi_routes_to_openslide_by_content(
    cmu1_region: np.ndarray, tmp_path: Path, psnr: Callable[[np.ndarray, np.ndarray], float]
) -> None:
    path = tmp_path / "scan.tif"  # the name says TIFF, the content says Hamamatsu
    _write_minimal_ndpi(cmu1_region, path, mpp=0.5)
    with open_slide(path) as slide:
        assert slide.backend == "openslide"
        assert slide.vendor == "hamamatsu"
        assert slide.mpp == pytest.approx(0.5)
        assert slide.dimensions == (640, 480)
        px = slide.read_region(0, 0, 0, 640, 480)
    assert psnr(px, cmu1_region) > 35
