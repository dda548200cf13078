"""The sliding-window engine with a real (small, seeded) torch network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.contracts import Calibration, DenseModel
from nucscale.infer._dense import DenseSegmenter
from nucscale.infer._engine import (
    MAPS_DTYPE,
    iter_patches,
    patch_grid,
    predict_image,
    predict_patches,
    predict_region,
)
from nucscale.stitch import owned_instances
from nucscale.tiling import Box, TileGrid


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """Dark blobs on a light background."""
    rng = np.random.default_rng(3)
    img = np.full((300, 340, 3), 230, np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 300), rng.integers(0, 340)
        img[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = rng.integers(20, 90)
    return img


def test_patch_grid_is_global() -> None:
    assert patch_grid(0, 100, 32, 3) == [32, 64]  # 0 would need input from -3
    assert patch_grid(-35, 135, 32, 3) == [-32, 0, 32, 64]
    assert patch_grid(5, 30, 32, 3) == []
    # with the image's extent: only patches whose output overlaps [0, 70)
    assert patch_grid(-35, 200, 32, 3, extent=70) == [0, 32, 64]
    assert patch_grid(100, 100, 32, 3, extent=70) == []


def test_maps_do_not_depend_on_the_window(tiny_model: DenseModel, image: np.ndarray) -> None:
    model = tiny_model
    a, (ax0, ay0, ax1, ay1) = predict_region(model, image[0:200, 0:220], (0, 0))
    b, (bx0, by0, bx1, by1) = predict_region(model, image[37:260, 51:300], (51, 37))
    # overlap of the two valid regions in global coordinates
    gx0, gy0 = max(ax0, bx0 + 51), max(ay0, by0 + 37)
    gx1, gy1 = min(ax1, bx1 + 51), min(ay1, by1 + 37)
    assert gx1 - gx0 >= 64 and gy1 - gy0 >= 64
    pa = a[:, gy0 - ay0 : gy1 - ay0, gx0 - ax0 : gx1 - ax0]
    pb = b[:, gy0 - 37 - by0 : gy1 - 37 - by0, gx0 - 51 - bx0 : gx1 - 51 - bx0]
    assert np.array_equal(pa, pb)
    assert ax0 % 32 == 0 and (bx0 + 51) % 32 == 0  # patches start on the global grid


def test_bfloat16_maps_do_not_depend_on_the_window(
    tiny_model: DenseModel, image: np.ndarray
) -> None:
    """bfloat16 keeps the engine's promise: a patch's maps are the same in every window."""
    a, (ax0, ay0, _, _) = predict_region(tiny_model, image[0:200, 0:220], (0, 0),
                                         precision="bfloat16")  # fmt: skip
    b, (bx0, by0, _, _) = predict_region(tiny_model, image[37:260, 51:300], (51, 37),
                                         precision="bfloat16")  # fmt: skip
    a32, _ = predict_region(tiny_model, image[0:200, 0:220], (0, 0))
    # global (64..192, 64..192) lies in both valid regions
    pa = a[:, 64 - ay0 : 192 - ay0, 64 - ax0 : 192 - ax0]
    pb = b[:, 64 - 37 - by0 : 192 - 37 - by0, 64 - 51 - bx0 : 192 - 51 - bx0]
    assert np.array_equal(pa, pb)
    assert not np.array_equal(a, a32)  # bfloat16 did run
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        predict_region(tiny_model, image[0:200, 0:220], (0, 0), precision="auto")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_openvino_maps_do_not_depend_on_the_window(cmu1_svs: Path, precision: str) -> None:
    """Run by OpenVINO, the shipped U-Net's maps of a patch are bit for bit the same in two
    overlapping windows of a real slide (each patch its own inference, as with torch)."""
    import openslide

    from nucscale.infer import get_segmenter

    with openslide.OpenSlide(str(cmu1_svs)) as slide:
        rgb = np.asarray(slide.read_region((0, 0), 0, (1700, 1200)).convert("RGB"))
    model = get_segmenter("unet").model  # type: ignore[attr-defined]
    kw = {"precision": precision, "runtime": "openvino"}
    a, (ax0, ay0, _, _) = predict_region(model, rgb[0:1100, 0:1650], (0, 0), **kw)
    b, (bx0, by0, _, _) = predict_region(model, rgb[300:1200, 450:1700], (450, 300), **kw)
    # global (512..1024, 512..1024): one patch, inside both windows' valid regions
    pa = a[:, 512 - ay0 : 1024 - ay0, 512 - ax0 : 1024 - ax0]
    pb = b[:, 512 - 300 - by0 : 1024 - 300 - by0, 512 - 450 - bx0 : 1024 - 450 - bx0]
    assert pa.shape == pb.shape == (3, 512, 512)
    assert np.array_equal(pa, pb) and float(pa[0].max()) > 0.9  # nuclei there
    with pytest.raises(ValueError, match="torch or openvino"):
        predict_region(model, rgb[:1100, :1100], (0, 0), runtime="onnx")


def test_openvino_maps_do_not_depend_on_the_thread_count(cmu1_svs: Path) -> None:
    """``--workers 2`` and ``--workers 1 --threads 2`` must give the same nuclei: run by
    OpenVINO, the shipped U-Net's maps are bit-identical with one and two threads."""
    import openslide

    from nucscale.infer import get_segmenter

    with openslide.OpenSlide(str(cmu1_svs)) as slide:
        rgb = np.asarray(slide.read_region((200, 300), 0, (1100, 1100)).convert("RGB"))
    model = get_segmenter("unet").model  # type: ignore[attr-defined]
    before = torch.get_num_threads()
    try:
        for precision in ("float32", "bfloat16"):
            maps = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                maps.append(predict_image(model, rgb, precision=precision, runtime="openvino"))
            assert np.array_equal(maps[0], maps[1])
    finally:
        torch.set_num_threads(before)


def test_a_partial_batch_gives_the_maps_of_a_full_one(
    tiny_model: DenseModel, image: np.ndarray
) -> None:
    """The last batch is filled up on the device, and only the real patches come back, as
    :data:`MAPS_DTYPE`: the same numbers as each patch computed among others in a full batch."""
    starts = [(y, x) for y in (3, 35, 67, 99) for x in (3, 35, 67)]  # 12 patches
    full = predict_patches(tiny_model, image, starts, batch_size=4)  # three full batches
    part = predict_patches(tiny_model, image, starts[5:10], batch_size=4)  # 4 + 1 filled up
    assert full.dtype == part.dtype == MAPS_DTYPE
    assert full.shape[0] == 12 and part.shape[0] == 5
    assert np.array_equal(part, full[5:10])
    assert np.abs(full.astype(np.float32)).max() > 0


def test_whole_image_maps_cover_every_pixel(tiny_model: DenseModel, image: np.ndarray) -> None:
    model = tiny_model
    maps = predict_image(model, image, batch_size=5)
    assert maps.shape == (1, 300, 340)
    # same numbers as running the network on the padded image in one go
    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), constant_values=255)
    with torch.inference_mode():
        ref = model.forward(model.preprocess(padded[None]))[0].numpy()
    # maps are kept at float16 precision (MAPS_DTYPE), on every path
    assert np.array_equal(maps, maps.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(maps, ref, rtol=2**-10, atol=1e-6)


def _owned_masks(
    seg: DenseSegmenter, store: np.ndarray, win: Box, core: Box, index: int
) -> list[tuple[int, ...]]:
    """Owned instances of one window of the 300 x 340 image, post-processed from the stored
    maps (``store``: the global maps from (0, 0), as the pipeline's maps store holds them),
    as flat indices into the image."""
    valid = seg.valid_box(win, (340, 300))
    assert valid is not None
    maps = store[:, valid.y0 : valid.y1, valid.x0 : valid.x1]
    out = seg.instances(maps, valid, win)
    assert out.valid is not None
    x0, y0, x1, y1 = out.valid
    view = Box(win.x0 + x0, win.y0 + y0, win.x0 + x1, win.y0 + y1)
    labels = out.labels[y0:y1, x0:x1]
    masks = []
    # no map beyond the store: the image rounded up to whole 32 px patches
    assert view.x0 >= 0 and view.y0 >= 0 and view.x1 <= 352 and view.y1 <= 320
    for lab in owned_instances(labels, view, core, index, Box(0, 0, 340, 300)).labels:
        ys, xs = np.nonzero(labels == lab)
        masks.append(tuple(np.sort((ys + view.y0) * 340 + (xs + view.x0))))
    return masks


@pytest.mark.parametrize("tile", [96, 100, 40])
def test_tiled_dense_segmentation_equals_whole_image(
    tiny_model: DenseModel, image: np.ndarray, tile: int
) -> None:
    """Windows of any tile size, halo ``min_halo`` (no patch-grid slack: the instance stage
    reads stored maps over its whole window), give exactly the whole image's nuclei."""
    seg = DenseSegmenter(tiny_model, batch_size=4)
    assert (seg.context, seg.min_halo) == (0, 12)
    padded = np.pad(image, ((100, 100), (100, 100), (0, 0)), constant_values=255)
    store, valid = predict_region(tiny_model, padded, (-100, -100), extent=(340, 300))
    assert valid == (100, 100, 100 + 352, 100 + 320)  # the store: whole patches from (0, 0)
    assert store.shape[1:] == (320, 352)  # held from global (0, 0), as the pipeline's store
    whole = _owned_masks(seg, store, Box(-100, -100, 440, 400), Box(0, 0, 340, 300), 0)
    assert len(whole) > 20
    grid = TileGrid(340, 300, tile=tile, halo=seg.min_halo)
    tiled: list[tuple[int, ...]] = []
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            tiled += _owned_masks(seg, store, grid.window(r, c), grid.core(r, c), grid.index(r, c))
    assert len(tiled) == len(set(tiled))  # no nucleus twice
    assert set(tiled) == set(whole)  # none lost, none changed


def test_a_halo_short_of_min_halo_changes_nuclei(tiny_model: DenseModel, image: np.ndarray) -> None:
    """The halo rule is tight: windows 12 px short of it lose or cut nuclei at tile borders."""
    seg = DenseSegmenter(tiny_model, batch_size=4)
    padded = np.pad(image, ((100, 100), (100, 100), (0, 0)), constant_values=255)
    store, _ = predict_region(tiny_model, padded, (-100, -100), extent=(340, 300))
    whole = _owned_masks(seg, store, Box(-100, -100, 440, 400), Box(0, 0, 340, 300), 0)
    grid = TileGrid(340, 300, tile=40, halo=0)
    tiled: list[tuple[int, ...]] = []
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            tiled += _owned_masks(seg, store, grid.window(r, c), grid.core(r, c), grid.index(r, c))
    assert set(tiled) != set(whole)


def test_patches_batch_by_batch_are_the_patches_at_once(
    tiny_model: DenseModel, image: np.ndarray
) -> None:
    """What the slide's forward task stores batch by batch (:func:`iter_patches` through
    :meth:`DenseSegmenter.forward`) is :func:`predict_patches`' result, in the same order."""
    starts = [(y, x) for y in (3, 35, 67) for x in (3, 35, 67, 99)]  # 12 patches
    whole = predict_patches(tiny_model, image, starts, batch_size=5)
    parts = list(iter_patches(tiny_model, image, starts, batch_size=5))
    assert [len(p) for p in parts] == [5, 5, 2]
    assert np.array_equal(np.concatenate(parts), whole)
    # the segmenter hands out global starts with each batch; origin (x, y) = (10, 20)
    seg = DenseSegmenter(tiny_model, batch_size=5)
    glob = [(y + 20, x + 10) for y, x in starts]
    got = list(seg.forward(image, (10, 20), glob, Calibration({})))
    assert [s for s, _ in got] == [glob[:5], glob[5:10], glob[10:]]
    assert np.array_equal(np.concatenate([m for _, m in got]), whole)


def test_declared_map_counts_are_what_the_networks_output() -> None:
    """The plan takes a network's map count from the model where it declares one (no forward
    pass in the plan's serial step): the U-Net's and HoVer-Net's declared counts are what their
    forward returns; a model that declares none is run once on a noise patch."""
    from nucscale.infer._engine import n_maps
    from nucscale.models.hovernet import HoVerNet
    from nucscale.models.unet import UNetModel

    models = [UNetModel(random_init=True), UNetModel(), HoVerNet("fast", nr_types=6),
              HoVerNet("fast", nr_types=None)]  # fmt: skip
    for model in models:
        assert model.n_maps > 0 and n_maps(model) == model.n_maps
        size = model.spec.input_size
        x = model.preprocess(np.full((1, size, size, 3), 128, np.uint8))
        with torch.inference_mode():
            assert model.forward(x).shape[1] == model.n_maps, model.name
    assert [m.n_maps for m in models] == [3, 3, 9, 3]  # shipped U-Net: fg, boundary, distance
    undeclared = UNetModel(random_init=True)
    undeclared.n_maps = 0
    assert n_maps(undeclared) == 3  # learned from one forward pass
