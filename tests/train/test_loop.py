"""A tiny training run learns, checkpoints, and resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.models.unet import UNetModel
from nucscale.train import TrainConfig, export_weights, train

IDS = ["0a849e0eb15f", "3c4c675825f7"]  # one fluorescence, one H&E


@pytest.fixture
def tiny_data(dsb2018: Path, tmp_path: Path) -> Path:
    """Two DSB pairs linked (not copied) into a folder, with a split that trains on both."""
    folder = tmp_path / "data"
    folder.mkdir()
    for i in IDS:
        for kind in ("image", "labels"):
            (folder / f"{i}_{kind}.png").symlink_to(dsb2018 / f"{i}_{kind}.png")
    (folder / "split.json").write_text(json.dumps({"train": IDS, "heldout": []}))
    return folder


def test_tiny_run_learns_and_resumes(tiny_data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ck.pt"
    base = {"patch": 64, "batch": 4, "threads": 1, "depth": 3, "width": 8, "lr": 1e-2}
    losses: list[float] = []
    cfg = TrainConfig(steps=60, checkpoint_every=20, **base)  # type: ignore[arg-type]
    train(tiny_data, ckpt, cfg, progress=lambda s, loss: losses.append(loss))
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10])
    ck = torch.load(ckpt, weights_only=True)
    assert ck["step"] == 60
    assert {"optimizer", "config", "normalisation", "split", "mpp", "plausibility"} <= set(ck)
    # each image at its own pixel size (no index.json here: estimated from its nuclei)
    assert ck["pixel_sizes"] == {
        "0a849e0eb15f": [0.5, "estimated"],
        "3c4c675825f7": [0.5, "estimated"],
    }
    assert 2.0 < ck["plausibility"]["min_area_um2"] < 15.0

    # 6 steps straight == stop at 3, then resume for 3 more (same batches, same schedule)
    straight, split = tmp_path / "a.pt", tmp_path / "b.pt"
    train(tiny_data, straight, TrainConfig(steps=6, **base))  # type: ignore[arg-type]
    train(tiny_data, split, TrainConfig(steps=6, **base), until=3)  # type: ignore[arg-type]
    assert torch.load(split, weights_only=True)["step"] == 3
    seen: list[int] = []
    train(
        tiny_data,
        split,
        TrainConfig(steps=6, **base),  # type: ignore[arg-type]
        resume=True,
        progress=lambda s, loss: seen.append(s),
    )
    assert seen == [4, 5, 6]
    a = torch.load(straight, weights_only=True)["state_dict"]
    b = torch.load(split, weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)

    weights = export_weights(ckpt, tmp_path / "w.pt")
    assert weights.stat().st_size < ckpt.stat().st_size
    model = UNetModel(weights)
    assert model.module.config == {"depth": 3, "width": 8, "in_channels": 3, "out_channels": 3}
    assert model.mpp == 0.5
    assert model.min_area == int(np.ceil(ck["plausibility"]["min_area_um2"] / 0.25))


def test_resume_without_checkpoint_is_an_error(tiny_data: Path, tmp_path: Path) -> None:
    from nucscale.errors import InputError

    with pytest.raises(InputError, match="no checkpoint"):
        train(tiny_data, tmp_path / "none.pt", TrainConfig(steps=1, patch=64), resume=True)


def test_a_fine_tune_starts_from_the_given_weights(tiny_data: Path, tmp_path: Path) -> None:
    """--init: the file's architecture and weights are the start (its depth wins over the
    config's), the checkpoint names the file, and a resumed fine-tune keeps that record."""
    from nucscale.models._checkpoint import sha256_file

    base = {"patch": 64, "batch": 2, "threads": 1, "checkpoint_every": 1}
    first = tmp_path / "first.pt"
    train(tiny_data, first, TrainConfig(steps=2, depth=3, width=8, **base))  # type: ignore[arg-type]
    start = export_weights(first, tmp_path / "start.pt")
    tuned = tmp_path / "tuned.pt"
    # lr 0: AdamW changes no weight, so the fine-tune's convolutions are the file's
    cfg = TrainConfig(steps=2, depth=5, width=4, lr=0.0, init=str(start), **base)  # type: ignore[arg-type]
    train(tiny_data, tuned, cfg, until=1)
    ck = torch.load(tuned, weights_only=True)
    assert ck["config"]["depth"] == 3 and ck["config"]["width"] == 8
    assert ck["init"] == {"file": "start.pt", "sha256": sha256_file(start), "step": 2}
    want = torch.load(start, weights_only=True)["state_dict"]
    convs = [k for k in want if k.endswith(".weight") and want[k].ndim == 4]
    assert convs
    for key in convs:
        torch.testing.assert_close(ck["state_dict"][key], want[key], msg=key)
    # a plain resume (no --init given again) keeps the record
    train(tiny_data, tuned, TrainConfig(steps=2, depth=3, width=8, lr=0.0, **base), resume=True)  # type: ignore[arg-type]
    assert torch.load(tuned, weights_only=True)["init"]["file"] == "start.pt"
    assert torch.load(export_weights(tuned, tmp_path / "w.pt"), weights_only=True)["init"]


def test_a_fine_tune_needs_three_channel_weights(tiny_data: Path, tmp_path: Path) -> None:
    from nucscale.errors import InputError
    from nucscale.models.unet import UNet

    net = UNet(depth=2, width=4, in_channels=1)
    bad = tmp_path / "grey.pt"
    torch.save({"state_dict": net.state_dict(), "config": net.config}, bad)
    with pytest.raises(InputError, match="1 channels"):
        train(tiny_data, tmp_path / "x.pt", TrainConfig(steps=1, patch=64, init=str(bad)))
