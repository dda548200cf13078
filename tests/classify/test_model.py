"""The classifier on seeded data: cross-validated metrics, class-count checks, model files that
load without pickle (and the refusal of pickles and of tampered files), the prediction table,
and the choice of feature columns."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from nucscale.classify import (
    FULL_FEATURES,
    NUCLEUS_FEATURES,
    check_class_counts,
    choose_features,
    fit,
    fit_model,
    load_model,
    min_per_class,
    prediction_table,
    save_model,
)
from nucscale.errors import InputError
from nucscale.store import classes_schema, features_path


def _data(n: int = 150, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three features; the class is set by the first two (a real, learnable boundary)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.where(x[:, 0] < -0.3, "pale", np.where(x[:, 1] < 0, "dark small", "dark large"))
    return x, y.tolist()


def test_fit_cross_validates_and_learns_the_boundary() -> None:
    x, y = _data()
    model, m = fit(x, y, ["f0", "f1", "f2"], classifier="gbt", seed=0, folds=5)
    assert model.classes == m.classes == ["dark large", "dark small", "pale"]
    assert m.n == 150 and sum(m.counts.values()) == 150
    assert np.asarray(m.confusion).sum() == 150
    assert np.trace(np.asarray(m.confusion)) == round(m.accuracy * 150)
    assert m.balanced_accuracy > 0.85 and len(m.fold_balanced_accuracy) == 5
    assert set(m.per_class) == set(m.classes) and 0 < m.log_loss < 0.6
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert np.mean(np.asarray(model.predict(x)) == np.asarray(y)) > 0.9
    # seeded: the same figures again
    again = fit(x, y, ["f0", "f1", "f2"], classifier="gbt", seed=0, folds=5)[1]
    assert again.to_dict() == m.to_dict()


def test_random_forest_too() -> None:
    x, y = _data(90, seed=3)
    model, m = fit(x, y, ["f0", "f1", "f2"], classifier="rf", seed=1, folds=3)
    assert m.balanced_accuracy > 0.7 and model.classifier == "rf"


def test_class_count_checks() -> None:
    assert min_per_class(5) == 5 and min_per_class(2) == 6
    assert check_class_counts(["a"] * 20) == "only one class ('a'); a classifier needs at least 2"
    reason = check_class_counts(["a"] * 20 + ["b"] * 4, folds=5)
    assert reason is not None and "'b' 4" in reason and "at least 5" in reason
    assert check_class_counts(["a"] * 5 + ["b"] * 5, folds=5) is None


def test_model_file_round_trip_never_unpickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data(80)
    model = fit_model(x, y, ["f0", "f1", "f2"], seed=0)
    sha = save_model(model, tmp_path / "m.skops")
    assert zipfile.is_zipfile(tmp_path / "m.skops")

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded, sha2 = load_model(tmp_path / "m.skops")
    assert sha2 == sha and loaded.features == ["f0", "f1", "f2"] and loaded.classes == model.classes
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


class _Payload:
    """What a malicious pickle does on load: here, create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_raw_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps({"estimator": _Payload(marker)}))
    with pytest.raises(InputError, match="never loads pickles") as err:
        load_model(path)
    assert not marker.exists() and str(err.value).startswith(str(path))


def _retype(node: object, cls: str, to: tuple[str, str]) -> bool:
    """Turn the first node of type ``cls`` in a skops schema into type ``to`` (module, name)."""
    if isinstance(node, dict):
        if node.get("__class__") == cls:
            node["__module__"], node["__class__"] = to
            return True
        return any(_retype(v, cls, to) for v in node.values())
    if isinstance(node, list):
        return any(_retype(v, cls, to) for v in node)
    return False


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    x, y = _data(80)
    save_model(fit_model(x, y, ["f0", "f1", "f2"]), tmp_path / "m.skops")
    bad = tmp_path / "bad.skops"
    with zipfile.ZipFile(tmp_path / "m.skops") as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "schema.json":
                schema = json.loads(data)
                assert _retype(schema, "_SigmoidCalibration", ("os", "system"))
                data = json.dumps(schema).encode()
            zout.writestr(item, data)
    with pytest.raises(InputError, match=r"refused: holds type\(s\) .*os\.system"):
        load_model(bad)


def test_other_skops_files_are_not_models(tmp_path: Path) -> None:
    import skops.io as sio

    sio.dump({"format": "something else"}, tmp_path / "other.skops")
    with pytest.raises(InputError, match="not a nucscale cell classifier"):
        load_model(tmp_path / "other.skops")
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "missing.skops")


def test_prediction_table_takes_the_most_probable_class() -> None:
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    t = prediction_table(np.array([7, 8, 9]), proba, ["pale", "dark"], "ab" * 32)
    assert t.schema == classes_schema(["pale", "dark"])
    assert t.column_names == ["nucleus_id", "class", "p_pale", "p_dark", "model_sha256"]
    assert t.column("class").to_pylist() == ["dark", "pale", "pale"]  # a tie: the first class
    assert t.column("p_dark").type == pa.float32()
    empty = prediction_table(np.zeros(0, np.int64), np.zeros((0, 2)), ["pale", "dark"], "x")
    assert empty.num_rows == 0 and empty.schema == t.schema


def test_feature_choice(synthetic_out: Path, make_out) -> None:  # type: ignore[no-untyped-def]
    both = ["a", "b"]
    assert choose_features(synthetic_out, both) == [*NUCLEUS_FEATURES, *FULL_FEATURES]
    assert choose_features(synthetic_out, both, feature_set="morphology") == list(NUCLEUS_FEATURES)
    assert choose_features(synthetic_out, both, ["area", " texture_contrast", "area"]) == [
        "area",
        "texture_contrast",
    ]
    for column, reason in [
        ("centroid_x", "identifies or places a nucleus"),
        ("tile_row", "identifies or places a nucleus"),
        ("nucleus_id", "identifies or places a nucleus"),
        ("nonsense", "not a numeric column of the nucleus or features table"),
    ]:
        with pytest.raises(InputError, match=reason):
            choose_features(synthetic_out, both, [column])
    plain = make_out("plain", full=False)
    assert choose_features(plain, both) == list(NUCLEUS_FEATURES)
    for kwargs in ({"feature_set": "full"}, {"columns": ["area", "texture_contrast"]}):
        with pytest.raises(InputError, match="no features table") as err:
            choose_features(plain, both, **kwargs)  # type: ignore[arg-type]
        assert str(err.value).startswith(str(features_path(plain, "a")))


def test_card_json_is_plain_json(tmp_path: Path) -> None:
    """Metrics serialise without numpy types (the card is JSON)."""
    x, y = _data(60)
    m = fit(x, y, ["f0", "f1", "f2"], folds=3)[1]
    assert json.loads(json.dumps(m.to_dict()))["n"] == 60
