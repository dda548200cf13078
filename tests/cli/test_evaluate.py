"""`nucscale evaluate`: real DSB ground truth against a perturbed copy written to tmp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries
from typer.testing import CliRunner

from nucscale.analysis import evaluate
from nucscale.cli import _evaluate, app  # noqa: F401 - registers the command

runner = CliRunner()
ENV = {"COLUMNS": "200"}
PREFIXES = ("0999dab07b11", "1ef68e93964c")


def _perturb(gt: np.ndarray) -> np.ndarray:
    """Outlines removed and the largest nucleus dropped."""
    pred = gt.copy()
    pred[find_boundaries(gt, mode="inner")] = 0
    ids, counts = np.unique(gt[gt > 0], return_counts=True)
    pred[gt == ids[counts.argmax()]] = 0
    return pred


@pytest.fixture
def pair_dirs(dsb2018: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """pred/, gt/ and img/ folders of label PNGs with the same file names."""
    dirs = [tmp_path / n for n in ("pred", "gt", "img")]
    for d in dirs:
        d.mkdir()
    for p in PREFIXES:
        gt = np.asarray(Image.open(dsb2018 / f"{p}_labels.png")).astype(np.uint16)
        Image.fromarray(gt).save(dirs[1] / f"{p}.png")
        Image.fromarray(_perturb(gt)).save(dirs[0] / f"{p}.png")
        Image.open(dsb2018 / f"{p}_image.png").convert("RGB").save(dirs[2] / f"{p}.png")
    return dirs[0], dirs[1], dirs[2]


def test_single_pair_with_json_and_overlay(pair_dirs: tuple[Path, Path, Path]) -> None:
    pred_dir, gt_dir, img_dir = pair_dirs
    name = f"{PREFIXES[0]}.png"
    out_json, out_png = pred_dir.parent / "m.json", pred_dir.parent / "qc.png"
    args = ["evaluate", str(pred_dir / name), str(gt_dir / name)]
    args += ["--image", str(img_dir / name), "--overlay", str(out_png), "--json", str(out_json)]
    res = runner.invoke(app, args, env=ENV)
    assert res.exit_code == 0, res.output
    gt = np.asarray(Image.open(gt_dir / name))
    expected = evaluate(gt, np.asarray(Image.open(pred_dir / name)))
    assert f"{expected['pq']:.4f}" in res.output
    data = json.loads(out_json.read_text())
    assert data["images"][0]["pq"] == pytest.approx(expected["pq"])
    assert data["images"][0]["fn"] == 1 and data["images"][0]["fp"] == 0  # the dropped one
    qc = np.asarray(Image.open(out_png))
    assert qc.shape == (*gt.shape, 3)
    assert ((qc == (255, 0, 0)).all(axis=2)).sum() > 0  # the dropped nucleus, outlined red
    assert ((qc == (255, 255, 0)).all(axis=2)).sum() > 100  # matched ones, yellow


def test_folders_report_each_image_and_the_mean(pair_dirs: tuple[Path, Path, Path]) -> None:
    pred_dir, gt_dir, img_dir = pair_dirs
    out_json, qc_dir = pred_dir.parent / "m.json", pred_dir.parent / "qc"
    args = ["evaluate", str(pred_dir), str(gt_dir), "--image", str(img_dir)]
    args += ["--overlay", str(qc_dir), "--json", str(out_json)]
    res = runner.invoke(app, args, env=ENV)
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    assert [Path(r["pred"]).stem for r in data["images"]] == sorted(PREFIXES)
    pqs = [r["pq"] for r in data["images"]]
    assert all(0.5 < v < 1.0 for v in pqs)
    assert data["mean"]["pq"] == pytest.approx(np.mean(pqs))
    assert "mean (2)" in res.output
    assert sorted(p.name for p in qc_dir.iterdir()) == [f"{p}_overlay.png" for p in PREFIXES]


def test_errors_are_one_line_and_exit_2(pair_dirs: tuple[Path, Path, Path]) -> None:
    pred_dir, gt_dir, _ = pair_dirs
    name = f"{PREFIXES[0]}.png"
    res = runner.invoke(app, ["evaluate", str(pred_dir / "nope.png"), str(gt_dir / name)])
    assert res.exit_code == 2
    assert "nope.png" in res.output and "not found" in res.output
    assert res.output.strip().count("\n") == 0
    other = f"{PREFIXES[1]}.png"  # 256x256 vs 519x253
    res = runner.invoke(app, ["evaluate", str(pred_dir / other), str(gt_dir / name)], env=ENV)
    assert res.exit_code == 2
    assert "differs from ground truth" in res.output and other in res.output
    res = runner.invoke(app, ["evaluate", str(pred_dir), str(gt_dir / name)], env=ENV)
    assert res.exit_code == 2 and "both be files or both be folders" in res.output
