"""TorchScriptModel: the real bioimage.io "UNet 2D Nuclei Broad" reproduced and evaluated on DSB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nucscale.analysis import panoptic_quality
from nucscale.errors import SegmenterError
from nucscale.infer._segmenter import Segmentation
from nucscale.models._base import PatchSpec
from nucscale.models.torchscript import (
    CARDS_DIR,
    TorchScriptModel,
    load_card,
    watershed_instances,
)

# six 256x256 DSB fluorescence images (the first six of that size in index.json)
DSB_FLUO = (
    "0a849e0eb15f",
    "0e132f71c8b4",
    "191b2b2205f2",
    "1ef68e93964c",
    "295682d9eb5a",
    "31f1fbe85b88",
)


@pytest.fixture(scope="module")
def unet_dir(shared_data: Path) -> Path:
    path = shared_data / "models" / "unet2d-nuclei-broad"
    if not path.exists():  # same rule as tests/conftest.py::_require
        msg = f"shared test data not found: {path} (see ../shared/data/README.md)"
        if os.environ.get("NUCSCALE_REQUIRE_SHARED") == "1":
            pytest.fail(msg + "; NUCSCALE_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def unet(unet_dir: Path) -> TorchScriptModel:
    return TorchScriptModel(unet_dir / "weights.pt", "unet2d-nuclei-broad")


def test_bundled_card() -> None:
    card = load_card("unet2d-nuclei-broad")
    assert card.patch == PatchSpec(512, 448) and card.patch.margin == 32
    assert card.meta["license"] == "MIT"
    assert card.rgb_mode == "grey" and card.norm_mode == "zero_mean_unit_variance"
    assert card.activation == "sigmoid" and card.threshold == 0.5
    assert load_card(CARDS_DIR / "unet2d-nuclei-broad.json") == card


def test_reproduces_the_bioimageio_test_tensors(unet: TorchScriptModel, unet_dir: Path) -> None:
    x = np.load(unet_dir / "test_input.npy")  # raw intensities (122..4095)
    expected = np.load(unet_dir / "test_output.npy")
    # bioimage.io preprocessing: zero mean, unit variance over y, x (eps 1e-6)
    xn = (x - x.mean()) / (x.std() + 1e-6)
    with torch.inference_mode():
        y = unet.run_network(torch.from_numpy(xn.astype(np.float32))).numpy()
    assert y.shape == expected.shape == (1, 1, 512, 512)
    assert np.abs(y - expected).max() <= 1e-4
    assert unet.weights_sha256 == load_card("unet2d-nuclei-broad").weights_sha256
    # forward() keeps only the valid centre (halo 32 px)
    with torch.inference_mode():
        centre = unet.forward(torch.from_numpy(xn.astype(np.float32))).numpy()
    assert centre.shape == (1, 1, 448, 448)
    np.testing.assert_array_equal(centre, y[:, :, 32:480, 32:480])


def test_preprocess_is_grey_zero_mean_unit_variance(unet: TorchScriptModel) -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    x = unet.preprocess(patches)
    assert x.shape == (2, 1, 64, 64) and x.dtype == torch.float32
    grey = patches.astype(np.float64).mean(axis=-1)
    for i in range(2):
        ref = (grey[i] - grey[i].mean()) / (grey[i].std() + 1e-6)
        np.testing.assert_allclose(x[i, 0].numpy(), ref, atol=1e-5)
        assert abs(float(x[i].mean())) < 1e-5 and float(x[i].std(correction=0)) == pytest.approx(1)
    inverted = TorchScriptModel.__new__(TorchScriptModel)
    inverted.card, inverted.invert, inverted.haematoxylin = unet.card, True, False
    np.testing.assert_allclose(inverted.preprocess(patches).numpy(), -x.numpy(), atol=1e-5)


def test_watershed_splits_touching_discs() -> None:
    yy, xx = np.mgrid[:60, :80]
    prob = np.zeros((60, 80), np.float32)
    for cy, cx in ((30, 25), (30, 45)):  # two radius-11 discs overlapping a little
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 <= 121] = 0.9
    prob[5:8, 70:73] = 0.9  # 9 px speck: below min_size
    labels = watershed_instances(prob, threshold=0.5, h=2.0, min_size=20)
    assert labels.max() == 2 and labels[30, 25] != labels[30, 45] and labels[6, 71] == 0
    # translation consistent: shifting the map shifts the labels, nothing else
    shifted = watershed_instances(np.roll(prob, (3, 5), (0, 1)), threshold=0.5, h=2.0, min_size=20)
    np.testing.assert_array_equal(shifted[3:, 5:] > 0, labels[:-3, :-5] > 0)
    assert shifted.max() == 2


def test_on_dsb_fluorescence(unet: TorchScriptModel, dsb2018: Path) -> None:
    pqs = []
    for prefix in DSB_FLUO:
        rgb = np.asarray(Image.open(dsb2018 / f"{prefix}_image.png").convert("RGB"))
        gt = np.asarray(Image.open(dsb2018 / f"{prefix}_labels.png"))
        seg = unet.segment_image(rgb)
        assert isinstance(seg, Segmentation)
        assert seg.labels.shape == gt.shape and seg.labels.dtype == np.int32
        assert seg.count == int(seg.labels.max()) and seg.probs.min() > 0.5
        pqs.append(panoptic_quality(gt, seg.labels)["pq"])
    # measured (torch 2.13 CPU): mean PQ 0.346 (per image 0.63, 0.38, 0.26, 0.51, 0.08, 0.21),
    # AJI 0.457, Dice 0.701 with the card's threshold 0.5 and h 1.0; the network's foreground is
    # wider than the GT nuclei (a threshold of 0.97 would give PQ ~0.51 here)
    assert float(np.mean(pqs)) > 0.32


def test_bad_card_and_bad_weights(tmp_path: Path, unet_dir: Path) -> None:
    card = json.loads((CARDS_DIR / "unet2d-nuclei-broad.json").read_text())
    del card["patch"]["output_size"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(card))
    with pytest.raises(SegmenterError, match=r"bad\.json.*patch\.output_size"):
        TorchScriptModel(unet_dir / "weights.pt", bad)
    with pytest.raises(SegmenterError, match="not found"):
        load_card("no-such-model")
    with pytest.raises(SegmenterError, match=r"weights\.onnx: not a TorchScript file"):
        TorchScriptModel(unet_dir / "weights.onnx")
    with pytest.raises(SegmenterError, match=r"missing\.pt: weights file not found"):
        TorchScriptModel(tmp_path / "missing.pt")
    assert issubclass(SegmenterError, ValueError)


def test_haematoxylin_input_shows_nuclei_bright(shared_data: Path, cmu1_svs: Path) -> None:
    """Brightfield through a fluorescence-trained card: nuclei bright, stroma and glass dark."""
    from nucscale.io import open_slide
    from nucscale.tiling import optical_density

    weights = shared_data / "models" / "unet2d-nuclei-broad" / "weights.pt"
    model = TorchScriptModel(weights, haematoxylin=True)
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 1000, 500, 512, 512)
    x = model.preprocess(rgb[None]).numpy()[0, 0]
    darkest = optical_density(rgb).sum(-1) > 1.2  # nuclei: dark purple
    glass = rgb.mean(-1) > 225
    assert x[darkest].mean() > x[glass].mean() + 1.0  # in units of the patch's std
