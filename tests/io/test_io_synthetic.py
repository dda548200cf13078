"""Generators of test slides from the real CMU-1 region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nucscale.io import mosaic, open_slide, write_flat_tiff, write_pyramidal_tiff
from nucscale.io._synthetic import downsample2


def test_mosaic_is_mirrored_and_seamless(cmu1_region: np.ndarray) -> None:
    m = mosaic(cmu1_region, 3, 2)
    h, w = cmu1_region.shape[:2]
    assert m.shape == (3 * h, 2 * w, 3)
    np.testing.assert_array_equal(m[:h, :w], cmu1_region)
    np.testing.assert_array_equal(m[:h, w:], cmu1_region[:, ::-1])
    np.testing.assert_array_equal(m[h : 2 * h, :w], cmu1_region[::-1])
    np.testing.assert_array_equal(m[2 * h :, w:], cmu1_region[:, ::-1])
    # Seams: the columns either side of a boundary are equal (mirror), so no hard edge.
    np.testing.assert_array_equal(m[:, w - 1], m[:, w])
    np.testing.assert_array_equal(m[h - 1], m[h])
    with pytest.raises(ValueError, match="reps must be >= 1"):
        mosaic(cmu1_region, 0, 1)


def test_downsample2_is_box_mean() -> None:
    a = np.array([[0, 2, 9], [4, 6, 9], [9, 9, 9]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(downsample2(a)[:, :, 0], [[3]])


def test_large_mosaic_pyramid(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    big = mosaic(cmu1_region, 4, 4)  # 2560 x 1920
    path = tmp_path / "mosaic.ome.tif"
    write_pyramidal_tiff(big, path, mpp=0.499, tile=512, compression="deflate")
    with open_slide(path) as slide:
        assert slide.level_dimensions == ((2560, 1920), (1280, 960), (640, 480), (320, 240))
        assert slide.mpp == pytest.approx(0.499)
        np.testing.assert_array_equal(
            slide.read_region(0, 600, 400, 100, 200), big[400:600, 600:700]
        )
        np.testing.assert_array_equal(
            slide.read_region(2, 0, 0, 640, 480), downsample2(downsample2(big))
        )


def test_writers_validate_input(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        write_flat_tiff(cmu1_region[:, :, 0], tmp_path / "x.tif")
    with pytest.raises(ValueError, match="mpp must be positive"):
        write_pyramidal_tiff(cmu1_region, tmp_path / "x.tif", mpp=0)
    with pytest.raises(ValueError, match="multiple of 16"):
        write_pyramidal_tiff(cmu1_region, tmp_path / "x.tif", mpp=0.5, tile=100)
