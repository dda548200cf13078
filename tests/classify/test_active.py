"""Active learning: uncertainty, the diverse batch, the simulated experiment, and the CLI loop
(suggest -> label -> import -> train) on segmented synthetic smears (generated data)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nucscale.classify._active import select_batch, simulate, uncertainty
from nucscale.smear import matched_classes


def test_uncertainty_of_known_probabilities() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(uncertainty(p, "least-confidence"), [0.0, 0.5, 2 / 3])
    np.testing.assert_allclose(uncertainty(p, "margin"), [0.0, 1.0, 1.0])
    np.testing.assert_allclose(uncertainty(p, "entropy"), [0.0, np.log(2), np.log(3)], atol=1e-9)
    with pytest.raises(ValueError, match="unknown strategy"):
        uncertainty(p, "random")


def test_a_batch_is_diverse_not_near_copies() -> None:
    """30 near-copies are the most uncertain of all; a batch of 5 (from the 50 most uncertain)
    takes one of them, then the most uncertain nuclei of other regions of feature space."""
    rng = np.random.default_rng(0)
    copies = np.tile([10.0, 10.0], (30, 1)) + rng.normal(0, 0.01, (30, 2))
    others = rng.normal(0, 3, (200, 2))
    x = np.vstack([copies, others])
    p_copies = np.tile([0.34, 0.33, 0.33], (30, 1))
    p_others = rng.dirichlet([1, 1, 1], 200) * 0.5 + np.array([0.5, 0, 0])
    proba = np.vstack([p_copies, p_others])
    chosen = select_batch(proba, x, 5, seed=1)
    assert len(set(chosen.tolist())) == 5
    assert np.sum(chosen < 30) == 1  # one representative of the copies
    top = np.argsort(-uncertainty(proba))[:5]
    assert set(top.tolist()) <= set(range(30))  # plain top-5 would have been all copies
    s = uncertainty(proba)[chosen]
    assert np.all(np.diff(s) <= 0)  # most uncertain first


def test_simulation_curves_have_every_round() -> None:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    names = np.array(["a", "b", "c"])[y]
    curves = simulate(x, names, start=15, step=10, rounds=4, seeds=2)
    assert len(curves) == 2 * 2 * 5
    for (_, _), g in curves.groupby(["seed", "method"]):
        assert g["labels"].tolist() == [15, 25, 35, 45, 55]
    final = curves[curves["round"] == 4].groupby("method")["balanced_accuracy"].mean()
    assert final.min() > 0.6  # learnable data: both methods learn it


@pytest.mark.slow
def test_the_labelling_loop_from_the_cli(
    smear_run: tuple[Path, Path], tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    folder, out = smear_run
    truth = matched_classes(out, folder)  # what a person looking at the cells would answer
    answer = {(s, n): c for s, n, c in truth.itertuples(index=False, name=None)}
    labels = tmp_path / "labels.csv"
    truth.groupby("label").head(6).to_csv(labels, index=False)  # 18 first labels
    model = tmp_path / "clf.skops"
    res = nucscale_cli("classify", "train", str(out), "--labels", str(labels), "--model",
                       str(model), "--feature-set", "morphology", "--folds", "3")  # fmt: skip
    assert res.returncode == 0, res.stderr

    res = nucscale_cli("label", "suggest", str(out), "--model", str(model), "-n", "12",
                       "--labels", str(labels))  # fmt: skip
    assert res.returncode == 0, res.stderr
    first = out / "labeling" / "round-001"
    template = pd.read_csv(first / "labels-template.csv", keep_default_na=False)
    assert template["rank"].tolist() == list(range(1, 13))
    assert (template["label"] == "").all()
    already = set(pd.read_csv(labels)[["slide_id", "nucleus_id"]].itertuples(index=False))
    assert not already & set(template[["slide_id", "nucleus_id"]].itertuples(index=False))
    sheet = Image.open(first / "contact-sheet.png")
    assert sheet.size == (8 * 128, 2 * (128 + 30))
    geo = {p.stem for p in first.glob("*.geojson")}
    assert geo == set(template["slide_id"])

    # the person labels what they recognise (a merged clump has no class: left empty)
    template["label"] = [answer.get((s, n), "") for s, n in
                         template[["slide_id", "nucleus_id"]].itertuples(index=False)]  # fmt: skip
    template.to_csv(first / "labels-template.csv", index=False)
    known = int((template["label"] != "").sum())
    res = nucscale_cli("label", "import", str(out), str(first / "labels-template.csv"),
                       "--into", str(labels))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"{known} new label(s); {18 + known} in" in res.stderr
    # and the GeoJSON way: QuPath classifies the suggested detections of one slide
    sid = sorted(geo)[0]
    doc = json.loads((first / f"{sid}.geojson").read_text())
    for f in doc["features"]:
        cls = answer.get((sid, f["properties"]["nucleus_id"]))
        if cls is not None:
            f["properties"]["classification"] = {"name": cls, "color": [255, 0, 0]}
    back = tmp_path / f"{sid}.geojson"
    back.write_text(json.dumps(doc))
    res = nucscale_cli("label", "import", str(out), str(back), "--into", str(labels))
    assert res.returncode == 0, res.stderr
    assert "0 new label(s)" in res.stderr  # the same answers again: nothing new

    res = nucscale_cli("label", "suggest", str(out), "--model", str(model), "-n", "12",
                       "--labels", str(labels))  # fmt: skip
    assert res.returncode == 0, res.stderr
    second = pd.read_csv(out / "labeling" / "round-002" / "labels-template.csv")
    labelled = set(pd.read_csv(labels)[["slide_id", "nucleus_id"]].itertuples(index=False))
    assert not labelled & set(second[["slide_id", "nucleus_id"]].itertuples(index=False))


@pytest.mark.slow
def test_simulate_writes_curves_plot_and_summary(
    smear_run: tuple[Path, Path], tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    folder, out = smear_run
    labels = tmp_path / "all.csv"
    matched_classes(out, folder).to_csv(labels, index=False)
    dest = tmp_path / "sim"
    res = nucscale_cli("label", "simulate", str(out), "--labels", str(labels), "--to",
                       str(dest), "--start", "12", "--step", "8", "--rounds", "3", "--seeds",
                       "2", "--feature-set", "morphology")  # fmt: skip
    assert res.returncode == 0, res.stderr
    curves = pd.read_csv(dest / "curves.csv")
    assert set(curves["method"]) == {"active", "random"} and len(curves) == 2 * 2 * 4
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["final"]["active"]["labels"] == 12 + 3 * 8
    assert summary["final"]["active"]["balanced_accuracy"] > 0.8  # shapes are learnable
    assert Image.open(dest / "curves.png").size[0] > 400
