"""Train and predict on the synthetic folder: the model and its card, class tables for every
slide (atomic, refused as a whole when a slide lacks a feature column), stale classes, and the
one-line refusals of ``train``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nucscale.classify import (
    FULL_FEATURES,
    NUCLEUS_FEATURES,
    load_labels,
    load_model,
    predict_output,
    train_classifier,
)
from nucscale.classify._model import file_sha256
from nucscale.errors import InputError
from nucscale.query import open_results
from nucscale.store import (
    classes_path,
    features_path,
    nuclei_path,
    read_classes,
    read_nuclei,
    write_nuclei,
)
from nucscale.store._export import export_slide


@pytest.fixture
def labels_csv(synthetic_labels: pd.DataFrame, tmp_path: Path) -> Path:
    """100 of the synthetic nuclei with their rule class."""
    path = tmp_path / "labels.csv"
    synthetic_labels.sample(100, random_state=0).to_csv(path, index=False)
    return path


def test_train_writes_model_and_card_then_predict_classifies_every_slide(
    synthetic_out: Path, labels_csv: Path, tmp_path: Path
) -> None:
    model = tmp_path / "models" / "clf.skops"
    card = train_classifier(synthetic_out, labels_csv, model, folds=4, seed=2)
    assert card["features"] == [*NUCLEUS_FEATURES, *FULL_FEATURES]  # both tables: all columns
    assert card["model_sha256"] == file_sha256(model)
    assert card["classes"] == ["large", "small"] and sum(card["counts"].values()) == 100
    cv = card["cross_validation"]
    assert cv["folds"] == 4 and cv["seed"] == 2 and cv["balanced_accuracy"] > 0.85
    written = json.loads((tmp_path / "models" / "clf.card.json").read_text())
    assert written == card and written["labels"]["slides"] == ["a", "b"]
    md = (tmp_path / "models" / "clf.card.md").read_text()
    assert card["model_sha256"] in md and "balanced accuracy" in md and "| large |" in md

    counts = predict_output(synthetic_out, model)
    assert set(counts) == {"a", "b"}
    assert sum(counts["a"].values()) == 120 and sum(counts["b"].values()) == 80
    for sid in ("a", "b"):
        t = pq.read_table(classes_path(synthetic_out, sid))
        assert t.column_names == ["nucleus_id", "class", "p_large", "p_small", "model_sha256"]
        ids = read_nuclei(nuclei_path(synthetic_out, sid), columns=["nucleus_id"])
        assert t.column("nucleus_id").equals(ids.column("nucleus_id"))
        assert set(t.column("model_sha256").to_pylist()) == {card["model_sha256"]}
    with open_results(synthetic_out) as res:
        rows = res.sql(
            "SELECT c.slide_id, count(*), sum(CASE WHEN (n.area > 40) = (c.class = 'large') "
            "THEN 1 ELSE 0 END) FROM classes c JOIN nuclei n USING (slide_id, nucleus_id) "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
    assert [(s, n) for s, n, _ in rows] == [("a", 120), ("b", 80)]
    assert sum(ok for *_, ok in rows) / 200 > 0.9  # the rule, learnt from 100 labels


def test_qupath_labels_after_predict_are_the_changed_classes(
    synthetic_out: Path, labels_csv: Path, tmp_path: Path
) -> None:
    """After predict the export shows the predicted classes; objects the user leaves (or sets)
    to their predicted class are not new labels, the ones reclassified are."""
    model = tmp_path / "clf.skops"
    train_classifier(synthetic_out, labels_csv, model, feature_set="morphology")
    predict_output(synthetic_out, model)
    dest = tmp_path / "a.geojson"
    classes = read_classes(synthetic_out, "a")
    export_slide(nuclei_path(synthetic_out, "a"), "qupath-geojson", dest, "a", classes)
    doc = json.loads(dest.read_text())
    feats = doc["features"]
    predicted = [f["properties"]["classification"]["name"] for f in feats]
    assert set(predicted) <= {"large", "small"}
    assert "p_large" in feats[0]["properties"]["measurements"]
    flip = {"large": "small", "small": "large"}
    for f in feats[:3]:
        f["properties"]["classification"]["name"] = flip[f["properties"]["classification"]["name"]]
    dest.write_text(json.dumps(doc))
    got = load_labels(dest, synthetic_out)
    assert got["nucleus_id"].tolist() == [1000, 1001, 1002]
    assert got["label"].tolist() == [flip[c] for c in predicted[:3]]


def test_predict_refuses_a_model_the_output_cannot_feed(
    synthetic_out: Path, labels_csv: Path, tmp_path: Path, make_out: Callable[..., Path]
) -> None:
    model = tmp_path / "clf.skops"
    train_classifier(synthetic_out, labels_csv, model, columns=["area", "texture_contrast"])
    assert load_model(model)[0].features == ["area", "texture_contrast"]
    other = make_out("other")
    features_path(other, "b").unlink()  # slide b was run without --features full
    with pytest.raises(InputError, match=r"no features table .* the model clf\.skops needs it"):
        predict_output(other, model)
    assert not (other / "classes").exists()  # checked before anything was written


def test_classes_of_an_earlier_nucleus_table_are_not_current(
    synthetic_out: Path, labels_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "clf.skops"
    train_classifier(synthetic_out, labels_csv, model, feature_set="morphology")
    predict_output(synthetic_out, model)
    assert read_classes(synthetic_out, "a") is not None
    path = nuclei_path(synthetic_out, "a")
    write_nuclei(path, [read_nuclei(path)], {"settings_key": "key-a", "finished": "later"})
    assert read_classes(synthetic_out, "a") is None
    assert "earlier nucleus table" in caplog.text
    assert read_classes(synthetic_out, "b") is not None


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        (lambda f: f.assign(label="small"), r"only one class \('small'\)"),
        (
            lambda f: pd.concat([f[f.label == "small"], f[f.label == "large"].head(3)]),
            r"too few examples for 5-fold cross-validation \('large' 3\); each class needs at "
            "least 5",
        ),
        (
            lambda f: f.assign(nucleus_id=np.where(f.index == f.index[0], 5, f.nucleus_id)),
            r"1 nucleus id\(s\) of slide '.' are not in",
        ),
    ],
)
def test_train_refuses_labels_it_cannot_learn_from(
    synthetic_out: Path,
    synthetic_labels: pd.DataFrame,
    tmp_path: Path,
    labels: Callable[[pd.DataFrame], pd.DataFrame],
    reason: str,
) -> None:
    path = tmp_path / "labels.csv"
    labels(synthetic_labels.sample(60, random_state=0)).to_csv(path, index=False)
    with pytest.raises(InputError, match=reason) as err:
        train_classifier(synthetic_out, path, tmp_path / "clf.skops")
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert not (tmp_path / "clf.skops").exists()


def test_train_refuses_missing_feature_columns(
    labels_csv: Path, tmp_path: Path, make_out: Callable[..., Path]
) -> None:
    plain = make_out("plain", full=False)  # the same nuclei, without features tables
    with pytest.raises(InputError, match="not a numeric column") as err:
        train_classifier(plain, labels_csv, tmp_path / "m.skops", columns=["area", "redness"])
    assert "'redness'" in str(err.value)
    with pytest.raises(InputError, match="no features table") as err:
        train_classifier(plain, labels_csv, tmp_path / "m.skops", feature_set="full")
    assert str(err.value).startswith(str(features_path(plain, "a")))
