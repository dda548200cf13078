"""``nucscale train``: one-line errors, a checkpoint and slim weights on success."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from nucscale.cli import _train  # noqa: F401 - registers the command
from nucscale.cli._app import app
from nucscale.models.unet import UNetModel


def test_missing_folder_is_one_line_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2
    assert "training data folder not found" in res.output
    assert "Traceback" not in res.output


def test_train_command_writes_checkpoint_and_weights(dsb2018: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for kind in ("image", "labels"):
        (data / f"0a849e0eb15f_{kind}.png").symlink_to(dsb2018 / f"0a849e0eb15f_{kind}.png")
    (data / "split.json").write_text(json.dumps({"train": ["0a849e0eb15f"], "heldout": []}))
    ck, w = tmp_path / "ck.pt", tmp_path / "w.pt"
    args = ["train", str(data), "--out", str(ck), "--steps", "2", "--patch", "64"]
    res = CliRunner().invoke(app, [*args, "--batch", "2", "--threads", "1", "--export", str(w)])
    assert res.exit_code == 0, res.output
    checkpoint = torch.load(ck, weights_only=True)
    assert checkpoint["step"] == 2
    tuned = checkpoint["postprocess"]  # thresholds tuned on the training image
    assert tuned["fg_threshold"] in (0.4, 0.5, 0.6)
    assert tuned["boundary_threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert tuned["min_marker"] in (2, 8, 24)
    assert tuned.get("min_core") in (None, 0.3, 0.4, 0.5, 0.55, 0.6)  # centre-distance peak
    assert 0.0 <= tuned["train_pq"] <= 1.0
    slim = torch.load(w, weights_only=True)
    assert "optimizer" not in slim
    assert slim["postprocess"] == tuned
    model = UNetModel(w)  # the exported file carries its thresholds
    assert (model.fg_threshold, model.boundary_threshold, model.min_marker) == (
        tuned["fg_threshold"],
        tuned["boundary_threshold"],
        tuned["min_marker"],
    )
    assert model.min_core == tuned.get("min_core")


def test_train_scores_the_heldout_images(dsb2018: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = ["0a849e0eb15f", "3c4c675825f7"]
    for i in ids:
        for kind in ("image", "labels"):
            (data / f"{i}_{kind}.png").symlink_to(dsb2018 / f"{i}_{kind}.png")
    (data / "index.json").symlink_to(dsb2018 / "index.json")
    (data / "split.json").write_text(json.dumps({"train": ids[:1], "heldout": ids[1:]}))
    ck = tmp_path / "ck.pt"
    args = ["train", str(data), "--out", str(ck), "--steps", "1", "--patch", "64"]
    res = CliRunner().invoke(app, [*args, "--batch", "1", "--threads", "1"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "held-out images (1)" in res.output
    assert "brightfield_he" in res.output  # 3c4c675825f7 is H&E


def test_batch_shares_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    args = ["train", str(tmp_path), "--out", str(tmp_path / "c.pt")]
    res = CliRunner().invoke(app, [*args, "--he-share", "0.8", "--synthetic-share", "0.5"])
    assert res.exit_code == 2
    assert "sum to at most 1" in res.output
    assert not (tmp_path / "c.pt").exists()
