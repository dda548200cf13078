"""Tissue detection and resampling on the real CMU-1 slide; the Zarr tile store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from nucscale.io import open_slide
from nucscale.tiling import (
    Box,
    LevelChoice,
    choose_level,
    chunk_exists,
    create_tile_store,
    low_res_image,
    read_analysis_region,
    read_window,
    tissue_area_mm2,
    tissue_mask,
    write_tile,
)
from nucscale.tiling._store import store_chunk


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


@pytest.mark.parametrize("density", [0.3, 0.55, 0.7])
def test_small_objects_go_as_scikit_image_removes_them(density: float) -> None:
    """The plan's own small-object removal is scikit-image's, pixel for pixel: random masks
    around the percolation density (components of every size, touching the borders), and the
    real thumbnail's mask with its 64 px rule."""
    from skimage.morphology import remove_small_objects

    from nucscale.tiling._tissue import drop_small_objects

    mask = np.random.default_rng(7).random((700, 530)) < density
    for min_px in (2, 16, 64):
        expected = remove_small_objects(mask, max_size=min_px - 1)
        got = drop_small_objects(mask.copy(), min_px)
        assert np.array_equal(got, expected), min_px
        assert got.sum() < mask.sum()  # something went
        assert got.any() or (density < 0.5 and min_px > 2)  # and something stayed
    assert not drop_small_objects(np.zeros((5, 5), bool), 4).any()


@pytest.mark.parametrize("density", [0.005, 0.1, 0.5])
def test_disk_dilation_and_closing_are_scipy_and_scikit_image_pixel_for_pixel(
    density: float,
) -> None:
    """The plan's disk dilation (keep region) and closing (tissue mask) by rows of the disk are
    scipy's ``binary_dilation`` and scikit-image's ``closing`` with ``disk(r)``: random masks
    (isolated pixels to half full, touching every border), radii 1-12, thin and empty images."""
    from scipy import ndimage as ndi
    from skimage import morphology

    from nucscale.tiling._tissue import close_disk, dilate_disk

    rng = np.random.default_rng(11)
    shapes = [(301, 257), (40, 9), (1, 17), (17, 1), (1, 1), (0, 4)]
    for shape in shapes:
        mask = rng.random(shape) < density
        for r in (1, 2, 3, 5, 9, 12):
            grown = ndi.binary_dilation(mask, morphology.disk(r))
            assert np.array_equal(dilate_disk(mask, r), grown), (shape, r)
            if mask.size:  # scikit-image refuses an empty image
                closed = morphology.closing(mask, morphology.disk(r))
                assert np.array_equal(close_disk(mask, r), closed), (shape, r)
        assert np.array_equal(dilate_disk(mask, 0), mask)
    big = rng.random((301, 257)) < density
    assert dilate_disk(big, 9).sum() > big.sum()  # it grew: the comparison is not vacuous


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
    write_tile(store, 1, 1, Box(128, 128, 250, 256), tile)
    assert chunk_exists(store, 1, 1)
    win = read_window(store, Box(100, 100, 300, 280))
    assert np.array_equal(win[28:156, 28:150], tile)
    # read a chunk at a time: the same as one zarr selection, across chunks and the image edge
    whole = zarr.open_array(str(store), mode="r")[:]
    for box in (Box(-20, -5, 270, 310), Box(127, 0, 129, 300), Box(5, 130, 250, 131)):
        got, inner = read_window(store, box), box.intersect(Box(0, 0, 250, 300))
        assert inner is not None and got.shape == (box.height, box.width, 3)
        ys, xs = (
            slice(inner.y0 - box.y0, inner.y1 - box.y0),
            slice(inner.x0 - box.x0, inner.x1 - box.x0),
        )
        assert np.array_equal(got[ys, xs], whole[inner.y0 : inner.y1, inner.x0 : inner.x1])
        assert (got == 255).sum() == got.size - got[ys, xs].size + (got[ys, xs] == 255).sum()
    assert (win[:28] == 255).all()  # unwritten chunk reads white
    assert (win[:, 150:] == 255).all()  # outside the image reads white
    create_tile_store(store, (300, 250), 128, attrs)  # same attrs: reused
    assert chunk_exists(store, 1, 1)
    create_tile_store(store, (300, 250), 128, {**attrs, "level": 1})  # different: replaced
    assert not chunk_exists(store, 1, 1)
    # a chunk file without its completion marker (a write cut short) is not a finished tile
    write_tile(store, 0, 0, Box(0, 0, 128, 128), tile[:, :122].repeat(2, axis=1)[:, :128])
    assert chunk_exists(store, 0, 0)
    (store / "done" / "0_0").unlink()
    assert not chunk_exists(store, 0, 0)


def test_large_tiles_are_stored_in_chunks_no_other_tile_writes(tmp_path: Path) -> None:
    """Tiles over 1024 px are split into whole chunks of at most 1024 px (a window decodes only
    what it touches); every chunk lies in one tile, so concurrent ingests never share one."""
    assert [store_chunk(t) for t in (300, 1024, 1031, 1500, 2048, 3000, 4096)] == [
        300, 1024, 1031, 750, 1024, 1000, 1024,
    ]  # fmt: skip
    for tile in range(64, 5000):
        chunk = store_chunk(tile)
        assert tile % chunk == 0 and (chunk <= 1024 or chunk == tile)
    store = tmp_path / "tiles.zarr"
    create_tile_store(store, (2600, 2300), 2048, {"source": "x.svs"})
    assert zarr.open_array(str(store), mode="r").chunks == (1024, 1024, 3)
    rng = np.random.default_rng(2)
    for row, col in ((0, 0), (1, 1), (0, 1)):
        box = Box(col * 2048, row * 2048, min(col * 2048 + 2048, 2300),
                  min(row * 2048 + 2048, 2600))  # fmt: skip
        pixels = rng.integers(0, 255, (box.height, box.width, 3), dtype=np.uint8)
        write_tile(store, row, col, box, pixels)
        assert chunk_exists(store, row, col)
    whole = zarr.open_array(str(store), mode="r")[:]
    assert not chunk_exists(store, 1, 0) and (whole[2048:, :2048] == 255).all()
    for box in (Box(1792, 1792, 2400, 2700), Box(-40, 1000, 1030, 2100), Box(0, 0, 2300, 2600)):
        got, inner = read_window(store, box), box.intersect(Box(0, 0, 2300, 2600))
        assert inner is not None
        ys = slice(inner.y0 - box.y0, inner.y1 - box.y0)
        xs = slice(inner.x0 - box.x0, inner.x1 - box.x0)
        assert np.array_equal(got[ys, xs], whole[inner.y0 : inner.y1, inner.x0 : inner.x1])


def test_resampled_fluorescence_edges_are_not_brightened(dsb2018: Path, tmp_path: Path) -> None:
    """Beyond the image is the modality's background: a fluorescence field read at half its
    resolution must not blend glass-white into its outermost pixels."""
    import tifffile
    from PIL import Image

    field = np.asarray(Image.open(dsb2018 / "519dc0d672d1_image.png").convert("L"))
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, field, photometric="minisblack")
    with open_slide(path, mpp=0.25) as slide:
        choice = choose_level(slide, 0.25, 0.5, 0.02)
    assert choice.factor == 2.0
    whole = Box(0, 0, choice.width, choice.height)
    dark = read_analysis_region(str(path), choice, whole, fill=0)[:, :, 0].astype(int)
    white = read_analysis_region(str(path), choice, whole, fill=255)[:, :, 0].astype(int)
    inner = dark[1:-1, 1:-1]
    np.testing.assert_array_equal(inner, white[1:-1, 1:-1])  # only the rim can differ
    rim = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    assert rim.mean() < 2 * field.mean() + 5  # dark, like the field's background
    white_rim = np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]])
    assert white_rim.mean() > rim.mean() + 8  # glass padding brightened the rim (4 -> 18)


def test_the_tissue_map_keeps_centroids_by_their_cell_on_the_fixed_grid() -> None:
    from nucscale.tiling import TissueMap, keep_region

    mask = np.zeros((10, 10), bool)
    mask[4:6, 4:6] = True
    grown = keep_region(mask, um_per_px=4.0, margin_um=8.0)  # 2 cells
    assert grown[2:8, 4].all() and not grown[1, 4] and not grown[0, 0]
    tissue = TissueMap(mask, scale=16.0)  # 16 analysis px per cell
    # cell 4 spans analysis pixel centres 63.5 .. 79.5 (edges at integers: [64, 80))
    got = tissue.contains(np.array([63.0, 64.0, 79.0, 80.0, 1e9]), np.array([70.0] * 5))
    assert got.tolist() == [False, True, True, True, False]
    assert not tissue.contains(np.array([-5.0]), np.array([-5.0]))[0]  # clipped to cell 0


def test_ownership_applies_the_keep_rule_before_numbering() -> None:
    from nucscale.stitch import owned_instances
    from nucscale.tiling import Box

    labels = np.zeros((20, 20), np.int32)
    labels[2:5, 2:5], labels[10:13, 10:13], labels[15:18, 2:5] = 1, 2, 3
    box = Box(0, 0, 20, 20)
    every = owned_instances(labels, box, box, 0, box)
    assert every.labels.tolist() == [1, 2, 3]
    kept = owned_instances(labels, box, box, 0, box, keep=lambda cx, cy: cx > 5)
    assert kept.labels.tolist() == [2] and kept.nucleus_ids.tolist() == [1]  # dense ids


def test_low_res_image_takes_a_level_of_the_right_size_as_it_is(
    cmu1_svs: Path, tmp_path: Path
) -> None:
    """A level exactly ``max_size`` long is returned pixel for pixel; a larger one is
    block-averaged (rounded) down to it."""
    from nucscale.io import write_mosaic_tiff

    with open_slide(cmu1_svs) as s:
        src = s.read_region(0, 0, 0, 700, 600)
    path = tmp_path / "pyramid.ome.tif"
    write_mosaic_tiff(src, path, 1024, 1024, mpp=0.5)  # levels 1024, 512, 256
    with open_slide(path) as s:
        level1 = s.read_region(1, 0, 0, 512, 512)
        same, ds = low_res_image(s, 512)
        assert ds == 2.0 and np.array_equal(same, level1)
        half, ds = low_res_image(s, 300)  # level 1 averaged over 2 x 2 blocks
    means = level1.reshape(256, 2, 256, 2, 3).astype(np.float32).mean(axis=(1, 3))
    assert ds == 4.0 and np.array_equal(half, np.round(means).astype(np.uint8))
