"""Tissue detection and resampling on the real CMU-1 slide; the Zarr tile store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nucscale.io import open_slide
from nucscale.tiling import (
    Box,
    LevelChoice,
    chunk_exists,
    create_tile_store,
    low_res_image,
    read_analysis_region,
    read_window,
    tissue_area_mm2,
    tissue_mask,
    write_tile,
)


def test_tissue_on_cmu1(cmu1_svs: Path) -> None:
    with open_slide(cmu1_svs) as s:
        rgb, ds = low_res_image(s, 1024)
        assert max(rgb.shape[:2]) <= 1024
        assert ds == pytest.approx(s.dimensions[1] / rgb.shape[0], rel=0.01)
        mask, _ = tissue_mask(rgb)
        frac = mask.mean()
        # CMU-1-Small-Region: a strip of skin on glass; ~39% tissue by eye on the overlay
        assert 0.32 < frac < 0.46, frac
        area = tissue_area_mm2(mask, ds, s.mpp or 0.0)
        full = s.dimensions[0] * s.dimensions[1] * (s.mpp or 0.0) ** 2 / 1e6
        assert area == pytest.approx(frac * full, rel=0.02)
        # glass pixels are bright, tissue pixels darker
        assert rgb[~mask].mean() > rgb[mask].mean() + 20


def test_blank_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = (245 + rng.integers(-3, 4, size=(200, 300, 3))).astype(np.uint8)
    mask, _ = tissue_mask(glass)
    assert not mask.any()


def test_resampling_is_translation_consistent(cmu1_svs: Path) -> None:
    """A pixel's resampled value does not depend on the region that asked for it."""
    choice = LevelChoice(level=0, factor=1.37, mpp=0.499 * 1.37, width=1620, height=2166)
    big = read_analysis_region(str(cmu1_svs), choice, Box(100, 200, 400, 450))
    small = read_analysis_region(str(cmu1_svs), choice, Box(237, 291, 300, 333))
    assert np.array_equal(big[91:133, 137:200], small)
    assert big.dtype == np.uint8 and big.shape == (250, 300, 3)


def test_resampling_at_factor_one_is_the_level(cmu1_svs: Path) -> None:
    choice = LevelChoice(level=0, factor=1.0, mpp=0.499, width=2220, height=2967)
    got = read_analysis_region(str(cmu1_svs), choice, Box(10, 20, 74, 84))
    with open_slide(cmu1_svs) as s:
        assert np.array_equal(got, s.read_region(0, 10, 20, 64, 64))


def test_tile_store_roundtrip_and_reuse(tmp_path: Path) -> None:
    store = tmp_path / "tiles.zarr"
    attrs = {"source": "x.svs", "level": 0}
    create_tile_store(store, (300, 250), 128, attrs)
    assert not chunk_exists(store, 1, 1)
    tile = np.random.default_rng(1).integers(0, 255, size=(128, 122, 3), dtype=np.uint8)
    write_tile(store, Box(128, 128, 250, 256), tile)
    assert chunk_exists(store, 1, 1)
    win = read_window(store, Box(100, 100, 300, 280))
    assert np.array_equal(win[28:156, 28:150], tile)
    assert (win[:28] == 255).all()  # unwritten chunk reads white
    assert (win[:, 150:] == 255).all()  # outside the image reads white
    create_tile_store(store, (300, 250), 128, attrs)  # same attrs: reused
    assert chunk_exists(store, 1, 1)
    create_tile_store(store, (300, 250), 128, {**attrs, "level": 1})  # different: replaced
    assert not chunk_exists(store, 1, 1)
