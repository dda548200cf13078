"""The U-Net network, its DenseModel adapter, the post-processing and the shipped weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from nucscale.analysis import panoptic_quality
from nucscale.errors import SegmenterError
from nucscale.models._flood import flood
from nucscale.models._unet_post import unet_instances
from nucscale.models.unet import (
    UNet,
    UNetModel,
    default_weights,
    fold_batchnorm,
    join_skips,
    read_weights,
)
from nucscale.train import load_samples, load_split, targets

HELD_OUT_HE = "f5effed21f67"
HELD_OUT_FLUO = "519dc0d672d1"
#: (foreground Dice, PQ) floors on two held-out images at the model's pixel size; the shipped
#: weights reach (0.897, 0.513) on the H&E and (0.875, 0.767) on the fluorescence one, and the
#: floors leave a margin for BLAS differences between machines.
FLOORS = {HELD_OUT_HE: (0.85, 0.45), HELD_OUT_FLUO: (0.83, 0.7)}


@pytest.mark.parametrize(
    ("depth", "width", "cin", "cout"), [(1, 4, 3, 2), (3, 8, 1, 3), (4, 16, 3, 2)]
)
def test_unet_keeps_size_and_channels(depth: int, width: int, cin: int, cout: int) -> None:
    net = UNet(depth, width, cin, cout).eval()
    with torch.no_grad():
        y = net(torch.rand(2, cin, 64, 96))
    assert y.shape == (2, cout, 64, 96)
    assert net.multiple == 2 ** (depth - 1)


def test_default_unet_is_small() -> None:
    n = sum(p.numel() for p in UNet().parameters())
    assert 400_000 < n < 600_000  # width 8, depth 5: fast on CPU (benchmarks/models.py)


def test_unet_rejects_bad_config() -> None:
    with pytest.raises(SegmenterError, match="depth"):
        UNet(depth=0)


def test_model_geometry_and_fixed_normalisation() -> None:
    model = UNetModel(random_init=True)
    assert model.name == "unet"
    assert model.cpu_batch_size == 1  # its 21 MB activations stay in the heap (unet.py)
    assert (model.spec.input_size, model.spec.output_size, model.spec.margin) == (576, 512, 32)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (1, 576, 576, 3), dtype=np.uint8)
    x = model.preprocess(patches)
    assert x.shape == (1, 3, 576, 576)
    # per-pixel fixed transform: a pixel's value never depends on the rest of the patch
    np.testing.assert_allclose(x[0, :, 5, 7].numpy(), patches[0, 5, 7] / 255.0, rtol=1e-6)
    with torch.no_grad():
        y = model.forward(x)
    assert y.shape == (1, 3, 512, 512)
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0


def test_fluorescence_input_uses_the_slides_range_not_the_patch() -> None:
    """Fluorescence becomes inverted grey scaled by the slide's intensity range; a patch is
    never scaled by its own statistics (that would differ between tiles)."""
    model = UNetModel(random_init=True, modality="fluorescence")
    rng = np.random.default_rng(1)
    slide = np.repeat(rng.integers(5, 60, (200, 200, 1), dtype=np.uint8), 3, axis=2)
    slide[50:80, 50:80] = 200  # a bright nucleus
    cal = model.calibrate(slide, np.ones(slide.shape[:2], bool))
    assert cal["low"] < 10 and cal["high"] == 200
    patch = slide[None, 40:90, 40:90]
    x = model.preprocess(patch, cal).numpy()
    np.testing.assert_array_equal(x[0, 0], x[0, 2])  # grey
    assert x[0, 0, 20, 20] == 0.0  # the nucleus: dark
    assert x[0, 0, 2, 2] > 0.7  # background: bright
    with pytest.raises(SegmenterError, match="intensity range"):
        model.preprocess(patch)
    assert UNetModel(random_init=True).calibrate(slide, np.ones((200, 200), bool)) == {}


def test_fluorescence_maps_of_tiles_equal_the_whole_image(dsb2018: Path) -> None:
    """With the slide's calibration, maps of overlapping windows equal the whole image's."""
    from nucscale.infer._engine import predict_region

    model = UNetModel(modality="fluorescence")
    img, _ = _read(dsb2018, "0a849e0eb15f")
    big = np.pad(img, ((200, 200), (200, 200), (0, 0)))
    cal = model.calibrate(img, np.ones(img.shape[:2], bool))
    whole, (wx0, wy0, _, _) = predict_region(model, big, (0, 0), calibration=cal)
    part, (px0, py0, _, _) = predict_region(
        model, big[100:600, 150:650], (150, 100), calibration=cal
    )
    gy, gx = py0 + 100, px0 + 150  # global origin of the part's maps
    np.testing.assert_array_equal(
        part, whole[:, gy - wy0 : gy - wy0 + part.shape[1], gx - wx0 : gx - wx0 + part.shape[2]]
    )


def test_missing_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SegmenterError, match="not found"):
        UNetModel(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(SegmenterError, match="state_dict"):
        UNetModel(bad)
    evil = tmp_path / "evil.pt"  # a pickled callable: refused, never called
    torch.save({"state_dict": {}, "config": {}, "hook": os.getcwd}, evil)
    with pytest.raises(SegmenterError, match=r"evil\.pt: refuses to load pickled code"):
        UNetModel(evil)
    hovernet = tmp_path / "hovernet.tar"  # an official-format HoVer-Net checkpoint
    torch.save({"desc": {"conv0./.weight": torch.zeros(1)}, "epoch": 50}, hovernet)
    with pytest.raises(SegmenterError, match=r"hovernet\.tar: a HoVer-Net checkpoint, not U-Net"):
        UNetModel(hovernet)
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(SegmenterError, match="not a torch checkpoint"):
        UNetModel(text)
    # weights of another network: one line naming the tensors, not torch's line per key
    state = UNet().state_dict()
    state["head.weight"] = torch.zeros(3, 8, 3, 3)
    state["extra.weight"] = torch.zeros(1)
    state.pop("down.0.0.weight")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": state, "config": {}}, other)
    with pytest.raises(SegmenterError, match=r"1 missing keys: down\.0\.0\.weight; 1 un") as e:
        UNetModel(other)
    assert "\n" not in str(e.value)
    state["down.0.0.weight"] = UNet().state_dict()["down.0.0.weight"]
    del state["extra.weight"]
    torch.save({"state_dict": state, "config": {}}, other)
    with pytest.raises(SegmenterError, match=r"head\.weight \(3, 8, 3, 3\) for \(3, 8, 1, 1\)"):
        UNetModel(other)


def _read(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(folder / f"{prefix}_image.png").convert("RGB"))
    lab = np.asarray(Image.open(folder / f"{prefix}_labels.png")).astype(np.int32)
    return img, lab


@pytest.mark.parametrize("prefix", ["3c4c675825f7", "432f367a4c5b", "0a849e0eb15f"])
def test_post_recovers_ground_truth(dsb2018: Path, prefix: str) -> None:
    _, gt = _read(dsb2018, prefix)
    fg, bd, dist = targets(gt, 3)
    seg = unet_instances(fg, bd, min_area=1)
    pq = panoptic_quality(gt, seg.labels)
    assert pq["pq"] >= 0.9, pq
    # markers from the centre distance (cores) separate the same nuclei
    cores = unet_instances(fg, bd, dist=dist, dist_threshold=0.45, min_area=1, min_marker=1)
    assert panoptic_quality(gt, cores.labels)["pq"] >= 0.9
    assert seg.labels.max() == seg.count
    assert np.all(seg.types == 1)
    again = unet_instances(fg, bd, min_area=1)
    np.testing.assert_array_equal(seg.labels, again.labels)


def test_post_drops_small_and_oversized() -> None:
    fg = np.zeros((200, 200), np.float32)
    fg[10:13, 10:13] = 1  # 9 px: under min_area
    fg[50:70, 50:70] = 1  # kept
    fg[0:200, 150:190] = 1  # 200 px tall: over max_diameter
    seg = unet_instances(fg, np.zeros_like(fg), min_area=10, max_diameter=128)
    assert seg.count == 1
    assert (seg.labels == 1).sum() == 400


def test_post_empty_maps() -> None:
    seg = unet_instances(np.zeros((32, 32)), np.zeros((32, 32)))
    assert seg.count == 0
    assert seg.labels.dtype == np.int32


def test_shipped_weights_load_and_segment_heldout(dsb2018: Path) -> None:
    from nucscale.train._evaluate import score_image

    path = default_weights()
    assert path.is_file()
    assert path.stat().st_size < 10 * 2**20
    model = UNetModel()
    assert len(model.weights_sha256) == 64
    torch.set_num_threads(1)
    _, held, modality = load_split(dsb2018)
    assert model.mpp == 0.5 and model.plausibility["min_area_um2"] > 0
    assert model.dist_threshold is not None and model.min_core is not None
    for prefix, (dice_floor, pq_floor) in FLOORS.items():
        assert prefix in held
        # at the model's pixel size, resampled from the image's own (as nucscale run does)
        (sample,) = load_samples(dsb2018, [prefix], modality, mpp=model.mpp)
        scores = score_image(model, sample.image, sample.labels, modality[prefix])
        assert scores["dice"] > dice_floor, (prefix, scores)
        assert scores["pq"] > pq_floor, (prefix, scores)


def test_small_markers_do_not_split_a_nucleus() -> None:
    fg = np.zeros((40, 60), np.float32)
    fg[10:30, 10:50] = 1
    bd = np.where(fg > 0, 0.9, 0.0).astype(np.float32)
    bd[14:24, 14:24] = 0.1  # a 100 px seed
    bd[18:20, 40:42] = 0.1  # a 4 px speck of "interior" (chromatin texture)
    assert unet_instances(fg, bd, min_area=10, min_marker=2).count == 2
    one = unet_instances(fg, bd, min_area=10, min_marker=8)
    assert one.count == 1
    assert (one.labels == 1).sum() == 800  # the whole blob floods from the big seed


def test_folded_batchnorm_matches_the_trained_network() -> None:
    """Inference folds BatchNorm into the convolutions and convolves the decoders' upsampled
    and skip inputs apart (no concatenation); the maps stay those of the trained net."""
    data = read_weights(default_weights())
    trained = UNet(**data["config"])
    trained.load_state_dict(data["state_dict"])
    trained.eval()
    model = UNetModel()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())
    assert model.module.joined_skips
    x = torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want, got = torch.sigmoid(trained(x)), torch.sigmoid(model.module(x))
    assert float((want - got).abs().max()) < 1e-4


@pytest.mark.parametrize(("depth", "width"), [(1, 4), (3, 8), (5, 8)])
def test_joined_skips_equal_the_concatenation(depth: int, width: int) -> None:
    """Each decoder's convolution of (upsampled | skip) as two convolutions summed: the same
    maps as over the concatenation, in both memory layouts; joining twice changes nothing."""
    torch.manual_seed(depth)
    net = fold_batchnorm(UNet(depth=depth, width=width, in_channels=3, out_channels=3))
    for p in net.parameters():  # weights of trained scale, not init's near-zero ones
        p.data.normal_(0.0, 0.3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = net(x)
        joined = join_skips(net)
        assert joined is net and join_skips(net) is net
        got = net(x)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        got_cl = net(x.contiguous(memory_format=torch.channels_last))
    assert net.joined_skips
    for out in (got, got_cl):
        assert out.shape == want.shape
        assert float((out - want).abs().max()) <= 1e-4 * float(want.abs().max())
    assert sum(type(m).__name__ == "_SkipJoin" for m in net.modules()) == depth - 1


@pytest.mark.parametrize(("depth", "width", "cout"), [(1, 4, 2), (3, 8, 3), (5, 8, 3)])
def test_the_openvino_graph_is_the_network(depth: int, width: int, cout: int) -> None:
    """The U-Net built as an OpenVINO graph from the inference network's weights computes its
    logits (float32: to float rounding); bfloat16 runs too, to bfloat16's rounding."""
    from nucscale._offline import import_openvino
    from nucscale.models._unet_openvino import unet_graph

    ov = import_openvino()

    torch.manual_seed(depth)
    net = join_skips(fold_batchnorm(UNet(depth=depth, width=width, out_channels=cout)))
    for p in net.parameters():
        p.data.normal_(0.0, 0.3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = net(x).numpy()
    graph = unet_graph(net, 2, 64)
    for hint, tolerance in (("f32", 1e-4), ("bf16", 0.05)):
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 1}
        got = ov.Core().compile_model(graph, "CPU", config)({0: x.numpy()})[0]
        assert got.shape == want.shape == (2, cout, 64, 64)
        assert float(np.abs(got - want).max()) <= tolerance * float(np.abs(want).max())
    with pytest.raises(SegmenterError, match="inference network"):
        unet_graph(UNet(depth=2, width=4), 1, 64)  # skips not joined: not what the engine runs


def test_post_drops_instances_without_a_centre() -> None:
    """``min_core``: a blob whose centre-distance never reaches it is no nucleus."""
    fg = np.zeros((60, 100), np.float32)
    fg[10:40, 10:40] = 1  # a nucleus: its centre distance peaks at 1
    fg[10:40, 60:90] = 1  # a fragment the network sees no centre in
    dist = np.zeros_like(fg)
    dist[15:35, 15:35] = 0.5
    dist[20:30, 20:30] = 1.0
    dist[10:40, 60:90] = 0.3
    bd = np.zeros_like(fg)
    kept = unet_instances(fg, bd, dist=dist, min_area=10, min_core=0.5)
    assert kept.count == 1
    assert kept.labels[25, 25] == 1 and kept.labels[25, 75] == 0
    assert (kept.labels == 1).sum() == 900
    # a peak exactly at the cut-off is a centre
    assert unet_instances(fg, bd, dist=dist, min_area=10, min_core=0.3).count == 2
    # without the rule (or without a distance map) both stay
    assert unet_instances(fg, bd, dist=dist, min_area=10).count == 2
    assert unet_instances(fg, bd, min_area=10, min_core=0.5).count == 2


def _whole_window_reference(
    fg: np.ndarray, bd: np.ndarray, dist: np.ndarray, fg_t: float, bd_t: float, dist_t: float,
    min_area: int, max_diameter: int, min_marker: int, min_core: float,
) -> np.ndarray:  # fmt: skip
    """The U-Net post-processing done the plain way: one watershed over the whole window,
    orphans labelled after it, per-label maxima, a sort for the raster order."""
    four = ndi.generate_binary_structure(2, 1)
    f32 = [np.asarray(a, np.float32) for a in (fg, bd, dist)]
    mask = f32[0] >= fg_t
    markers, n = ndi.label(mask & (f32[1] < bd_t) & (f32[2] >= dist_t), structure=four)
    small = np.bincount(markers.ravel(), minlength=n + 1) < min_marker
    small[0] = False
    markers[small[markers]] = 0
    labels = flood(1.0 - f32[2], markers, mask, connectivity=1).astype(np.int32)
    orphans, _ = ndi.label(mask & (labels == 0), structure=four)
    labels[orphans > 0] = orphans[orphans > 0] + n
    ids = np.arange(1, labels.max() + 1)
    area = ndi.sum_labels(np.ones_like(labels), labels, ids)
    peak = ndi.maximum(f32[2], labels, ids)
    side = np.array([max(s.stop - s.start for s in sl) if sl else 0
                     for sl in ndi.find_objects(labels, max_label=ids.size)])  # fmt: skip
    keep = ids[(area >= min_area) & (area > 0) & (peak >= min_core) & (side <= max_diameter)]
    kept = np.where(np.isin(labels, keep), labels, 0)
    values, first = np.unique(kept.ravel(), return_index=True)
    order = values[1:][np.argsort(first[1:])]
    lut = np.zeros(labels.max() + 1, np.int32)
    lut[order] = np.arange(1, order.size + 1)
    return lut[kept]


#: (x0, y0, x1, y1): a "core" for the region rule, away from the middle of the window
REGION = (300, 200, 700, 800)


def _assert_region_keeps_what_meets_it(
    maps: np.ndarray, whole: np.ndarray, part: np.ndarray
) -> None:
    """Every instance of ``part`` is one of ``whole``, pixel for pixel, and every instance of
    ``whole`` whose bounding box meets :data:`REGION` is in ``part``; fewer than ``whole``."""
    x0, y0, x1, y1 = REGION
    inside = part > 0
    pairs, counts = np.unique(np.stack([part[inside], whole[inside]]), axis=1, return_counts=True)
    assert np.unique(pairs[0]).size == pairs.shape[1]  # one whole label per part label
    assert (whole[inside] > 0).all()
    sizes = np.bincount(whole.ravel())
    np.testing.assert_array_equal(counts, sizes[pairs[1]])  # and all of its pixels
    boxes = enumerate(ndi.find_objects(whole), start=1)
    meets = [
        lab
        for lab, (r, c) in boxes
        if r.start < y1 and r.stop > y0 and c.start < x1 and c.stop > x0
    ]
    assert len(meets) > 50
    assert set(meets) <= set(pairs[1].tolist())
    assert pairs.shape[1] < whole.max() * 0.8


def _plateau_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Touching blobs with a three-level distance map: marker ties everywhere."""
    rng = np.random.default_rng(3)
    fg = ndi.gaussian_filter(rng.random((400, 400)), 3)
    fg = ((fg - fg.min()) / (fg.max() - fg.min())).astype(np.float16)
    dist = (np.round(rng.random((400, 400)) * 2) / 2).astype(np.float16)
    bd = (rng.random((400, 400)) * 0.6).astype(np.float16)
    return fg, bd, dist


def test_post_by_components_equals_one_watershed_over_the_window(cmu1_svs: Path) -> None:
    """``unet_instances`` floods lone nuclei by lookup and clumps in their own boxes, on float16
    maps: labels identical to the plain recipe on float32 copies, on the shipped U-Net's maps of
    a real CMU-1 region and on a scene of plateaus."""
    from nucscale.infer._engine import MAPS_DTYPE, predict_image
    from nucscale.io import open_slide

    model = UNetModel()
    torch.set_num_threads(1)
    region = open_slide(cmu1_svs).read_region(0, 600, 900, 1024, 1024)
    maps = predict_image(model, region).astype(MAPS_DTYPE)  # as the maps store keeps them
    assert maps.shape == (3, 1024, 1024)
    params = (model.fg_threshold, model.boundary_threshold, model.dist_threshold, model.min_area,
              model.max_nucleus_diameter, model.min_marker, model.min_core)  # fmt: skip
    got = model.postprocess(maps)
    want = _whole_window_reference(maps[0], maps[1], maps[2], *params)
    assert got.count > 200  # the region is mostly tissue: hundreds of nuclei
    np.testing.assert_array_equal(got.labels, want)
    _assert_region_keeps_what_meets_it(maps, got.labels, model.postprocess(maps, REGION).labels)
    fg, bd, dist = _plateau_maps()
    scene = unet_instances(fg, bd, dist=dist, fg_threshold=0.5, boundary_threshold=0.3,
                           dist_threshold=0.5, min_area=5, max_diameter=40, min_marker=2,
                           min_core=1.0)  # fmt: skip
    assert scene.count > 50
    want = _whole_window_reference(fg, bd, dist, 0.5, 0.3, 0.5, 5, 40, 2, 1.0)
    np.testing.assert_array_equal(scene.labels, want)
