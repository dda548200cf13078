"""HoVer-Net: official state-dict compatibility, safe checkpoint loading, patch geometry.

``data/hovernet_official_keys.json`` lists the keys of a released HoVer-Net checkpoint (fast
mode, 6 types) with their shapes, read from the official code (vqdang/hover_net@67e2ce5e:
``variables_tf2pytorch.csv`` names + ``upsample2x.unpool_mat``, shapes from ``net_desc.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.errors import SegmenterError
from nucscale.infer import Segmentation
from nucscale.models._checkpoint import load_checkpoint, load_strict, sha256_file
from nucscale.models._types import TYPE_COLOURS, TYPE_NAMES
from nucscale.models.hovernet import HoVerNet, HoVerNetModule

DATA = Path(__file__).parent / "data"
NBT = ".num_batches_tracked"


@pytest.fixture(scope="session")
def official() -> dict:
    return json.loads((DATA / "hovernet_official_keys.json").read_text())


def _random_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key == "upsample2x.unpool_mat":
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


@pytest.fixture(scope="session")
def released(official: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A checkpoint in the released format: {"desc": state, "epoch": 1}, DataParallel keys."""
    state = _random_state(official["shapes"], seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "hovernet_fast_pannuke_type_tf2pytorch.tar"
    torch.save({"desc": {f"module.{k}": v for k, v in state.items()}, "epoch": 1}, path)
    return path, state


@pytest.fixture(scope="session")
def loaded(released: tuple[Path, dict]) -> HoVerNet:
    return HoVerNet(mode="fast", nr_types=6, type_set="pannuke", weights=released[0])


def test_keys_and_shapes_equal_official(official: dict) -> None:
    shapes = official["shapes"]
    assert official["commit"].startswith("67e2ce5e")
    assert len(shapes) == 668
    for nr_types, expected in (
        (6, shapes),
        (None, {k: v for k, v in shapes.items() if not k.startswith("decoder.tp.")}),
    ):
        state = HoVerNetModule("fast", nr_types).state_dict()
        mine = {k: list(v.shape) for k, v in state.items() if not k.endswith(NBT)}
        assert mine == expected
        # the official module also has a num_batches_tracked per BatchNorm
        nbt = {k.removesuffix(NBT) for k in state if k.endswith(NBT)}
        assert nbt == {k.removesuffix(".running_mean") for k in state if k.endswith("running_mean")}
    for key in ("conv0./.weight", "d0.units.0.conv1.weight", "decoder.np.u3.conva.weight"):
        assert key in shapes


def test_param_counts(official: dict) -> None:
    params = sum(
        int(np.prod(s))
        for k, s in official["shapes"].items()
        if not k.endswith(("running_mean", "running_var", "unpool_mat"))
    )
    fast6 = sum(p.numel() for p in HoVerNetModule("fast", 6).parameters())
    assert fast6 == params == 37_639_626
    assert sum(p.numel() for p in HoVerNetModule("fast", None).parameters()) == 33_625_412
    assert sum(p.numel() for p in HoVerNetModule("original", 5).parameters()) == 54_744_457


def test_released_checkpoint_loads_strictly(loaded: HoVerNet, released: tuple[Path, dict]) -> None:
    path, state = released
    got = loaded.module.state_dict()
    for key in ("conv0./.weight", "d3.units.2.conv3.weight", "decoder.tp.u0.conv.bias"):
        assert torch.equal(got[key], state[key])
    assert loaded.weights_sha256 == sha256_file(path)
    assert len(loaded.weights_sha256) == 64
    assert not loaded.module.training
    assert loaded.spec.input_size == 256
    assert loaded.spec.output_size == 164
    assert loaded.mpp == 0.25
    assert loaded.type_names[1] == "neoplastic"


def test_training_loop_checkpoint_with_num_batches_tracked(
    loaded: HoVerNet, released: tuple[Path, dict], tmp_path: Path
) -> None:
    state = dict(released[1])
    for key in [k for k in state if k.endswith("running_mean")]:
        state[key.removesuffix("running_mean") + "num_batches_tracked"] = torch.tensor(7)
    path = tmp_path / "bare.pt"
    torch.save(state, path)  # a bare state dict, no "desc"
    sd = load_checkpoint(path)
    load_strict(loaded.module, sd, path)
    assert int(loaded.module.state_dict()["d0.units.0.conv1/bn.num_batches_tracked"]) == 7


def test_missing_and_unexpected_keys_are_named(
    loaded: HoVerNet, released: tuple[Path, dict]
) -> None:
    path, state = released
    missing = {k: v for k, v in state.items() if k != "decoder.hv.u1.conva.weight"}
    with pytest.raises(SegmenterError, match=r"1 missing keys: decoder\.hv\.u1\.conva\.weight"):
        load_strict(loaded.module, missing, path)
    extra = {**state, "decoder.xx.u0.conv.weight": torch.zeros(1)}
    with pytest.raises(SegmenterError, match=r"1 unexpected keys: decoder\.xx\.u0\.conv\.weight"):
        load_strict(loaded.module, extra, path)
    wrong = {**state, "conv_bot.weight": torch.zeros(3)}
    shape = tuple(state["conv_bot.weight"].shape)
    with pytest.raises(SegmenterError, match=r"conv_bot\.weight") as caught:
        load_strict(loaded.module, wrong, path)
    assert f"1 tensors of another shape: conv_bot.weight (3,) for {shape}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_wrong_model_for_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "seg_only.tar"
    torch.save({"desc": {"conv0./.weight": torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(SegmenterError, match=r"seg_only\.tar: .*missing keys: .*\(\+\d+ more\)"):
        HoVerNet(mode="fast", nr_types=None, type_set=None, weights=path)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    torch.save({"desc": {"a": torch.zeros(1)}, "hook": os.getcwd}, path)
    with pytest.raises(SegmenterError, match=r"evil\.tar: refuses to load pickled code"):
        load_checkpoint(path)


def test_missing_and_non_torch_files(tmp_path: Path) -> None:
    """Each refusal is one line naming the file (torch's own unpickling errors run to ten
    lines and advise ``weights_only=False``)."""
    errors = []
    with pytest.raises(SegmenterError, match=r"nope\.tar: weights file not found") as caught:
        load_checkpoint(tmp_path / "nope.tar")
    errors.append(caught.value)
    with pytest.raises(SegmenterError, match=r": a folder, not a weights file") as caught:
        load_checkpoint(tmp_path)
    errors.append(caught.value)
    text = tmp_path / "notes.tar"
    text.write_text("not a checkpoint\n" * 10)
    with pytest.raises(SegmenterError, match=r"notes\.tar: not a torch checkpoint") as caught:
        load_checkpoint(text)
    errors.append(caught.value)
    binary = tmp_path / "noise.pt"  # neither zip nor pickle: torch's longest message
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SegmenterError, match=r"noise\.pt: not a torch checkpoint") as caught:
        load_checkpoint(binary)
    errors.append(caught.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SegmenterError, match=r"empty\.pt") as caught:
        load_checkpoint(empty)
    errors.append(caught.value)
    cut = tmp_path / "cut.pt"  # a torch zip archive cut short
    torch.save({"a": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(SegmenterError, match=r"cut\.pt: not a readable torch checkpoint") as caught:
        load_checkpoint(cut)
    errors.append(caught.value)
    unet = tmp_path / "unet.pt"  # the U-Net's own weights file
    torch.save({"state_dict": {"head.weight": torch.zeros(1)}, "config": {}}, unet)
    with pytest.raises(
        SegmenterError, match=r"unet\.pt: nucscale U-Net weights, not a Ho"
    ) as caught:
        load_checkpoint(unet)
    errors.append(caught.value)
    notdict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), notdict)
    with pytest.raises(SegmenterError, match=r"tensor\.pt: no state dict") as caught:
        load_checkpoint(notdict)
    errors.append(caught.value)
    for exc in errors:
        assert "\n" not in str(exc) and "weights_only` set to `False" not in str(exc), str(exc)


def test_fast_forward_geometry_and_maps(loaded: HoVerNet) -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    x = loaded.preprocess(patches)
    assert x.shape == (1, 3, 256, 256)
    assert x.dtype == torch.float32
    assert float(x.max()) == float(patches.max())  # [0, 255]; the net divides by 255
    with torch.no_grad():
        maps = loaded.forward(x)
    assert maps.shape == (1, 1 + 2 + 6, 164, 164)
    m = maps.numpy()
    assert m[0, 0].min() >= 0.0
    assert m[0, 0].max() <= 1.0
    np.testing.assert_allclose(m[0, 3:].sum(axis=0), 1.0, atol=1e-5)
    seg = loaded.postprocess(m[0])
    assert isinstance(seg, Segmentation)
    assert seg.labels.shape == (164, 164)
    assert seg.types.shape == (seg.count,)
    assert set(seg.types.tolist()) <= set(range(6))


def test_original_forward_geometry() -> None:
    model = HoVerNet(mode="original", nr_types=None, type_set=None)
    assert model.spec.input_size == 270
    assert model.spec.output_size == 80
    assert model.weights_sha256 == ""
    assert model.type_names == {1: "nucleus"}
    with torch.no_grad():
        maps = model.forward(model.preprocess(np.zeros((1, 270, 270, 3), np.uint8)))
    assert maps.shape == (1, 3, 80, 80)


def test_type_sets() -> None:
    assert TYPE_NAMES["pannuke"] == {
        0: "background",
        1: "neoplastic",
        2: "inflammatory",
        3: "connective",
        4: "dead",
        5: "non-neoplastic epithelial",
    }
    assert len(TYPE_NAMES["consep"]) == len(TYPE_NAMES["monusac"]) == 5
    assert TYPE_COLOURS["pannuke"][1] == (255, 0, 0)
    with pytest.raises(SegmenterError, match="nr_types=5"):
        HoVerNet(nr_types=6, type_set="consep")
    with pytest.raises(SegmenterError, match="unknown HoVer-Net type set"):
        HoVerNet(nr_types=5, type_set="lizard")
    with pytest.raises(SegmenterError, match="mode"):
        HoVerNet(mode="slow", nr_types=None, type_set=None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_tiled_maps_equal_whole_image_maps(loaded: HoVerNet, cmu1_svs: Path) -> None:
    """NP / HV / NC maps computed window by window equal the whole region's maps.

    Fixed seeded weights (the released ones cannot be had here). The region's 2 x 2 output
    patches sit on the global 164 px grid; two windows with other extents, each holding one
    of those patches, must reproduce the region's maps there.
    """
    from nucscale.infer._engine import predict_region
    from nucscale.io import open_slide

    out, m = loaded.spec.output_size, loaded.spec.margin  # 164, 46
    ox, oy = 6 * out - m, 5 * out - m  # region origin: its first patch starts at 6*164, 5*164
    size = 2 * out + 2 * m
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, ox, oy, size, size)
    whole, wv = predict_region(loaded, rgb, (ox, oy), batch_size=1)
    assert whole.shape == (1 + 2 + 6, 2 * out, 2 * out)
    assert wv[:2] == (m, m)
    # (x0, y0, x1, y1) of each window inside the region, and the patch (col, row) it holds
    windows = (((0, 0, 261, 259), (0, 0)), ((157, 156, size, size), (1, 1)))
    for (x0, y0, x1, y1), (pc, pr) in windows:
        maps, v = predict_region(loaded, rgb[y0:y1, x0:x1], (ox + x0, oy + y0), batch_size=1)
        assert maps.shape == (9, out, out)  # exactly that one patch fits
        assert (x0 + v[0], y0 + v[1]) == (m + pc * out, m + pr * out)
        ref = whole[:, pr * out : (pr + 1) * out, pc * out : (pc + 1) * out]
        np.testing.assert_allclose(maps, ref, rtol=0, atol=1e-6)
