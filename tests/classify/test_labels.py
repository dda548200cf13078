"""Labels in the three formats (CSV, Parquet, QuPath GeoJSON made from our own export as a
QuPath user would), matched to the nuclei of a results folder, and every refusal naming the
file and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from nucscale.classify import class_of, load_labels
from nucscale.errors import InputError
from nucscale.store import nuclei_path
from nucscale.store._export import export_slide


def _export(out: Path, sid: str, dest: Path) -> dict[str, Any]:
    export_slide(nuclei_path(out, sid), "qupath-geojson", dest, sid)
    return json.loads(dest.read_text(encoding="utf-8"))


def _as_qupath(doc: dict[str, Any]) -> dict[str, Any]:
    """What QuPath 0.4+ writes back of our features: it keeps id, objectType, classification
    and measurements, and drops the properties it does not know (nucleus_id)."""
    for f in doc["features"]:
        f["properties"].pop("nucleus_id")
    return doc


def test_csv_and_parquet_labels_read_back_checked_and_sorted(
    synthetic_out: Path, synthetic_labels: pd.DataFrame, tmp_path: Path
) -> None:
    shuffled = synthetic_labels.sample(frac=1.0, random_state=1)
    shuffled.to_csv(tmp_path / "l.csv", index=False)
    shuffled.to_parquet(tmp_path / "l.parquet")
    for name in ("l.csv", "l.parquet"):
        got = load_labels(tmp_path / name, synthetic_out)
        pd.testing.assert_frame_equal(got, synthetic_labels, check_dtype=False)
        assert got["nucleus_id"].dtype == "int64"


def test_geojson_from_our_export_classified_in_qupath(synthetic_out: Path, tmp_path: Path) -> None:
    doc = _as_qupath(_export(synthetic_out, "a", tmp_path / "a.geojson"))
    feats = doc["features"]
    # the user classifies four objects, in the ways QuPath versions write a class
    feats[0]["properties"]["classification"] = {"name": "tumour", "color": [200, 0, 0]}
    feats[1]["properties"]["classification"] = {"names": ["tumour", "positive"], "color": [1, 2, 3]}
    feats[2]["properties"]["classification"] = "stroma"
    del feats[3]["properties"]["classification"]
    feats[3]["properties"]["name"] = "immune"
    feats[4]["properties"]["classification"] = {"name": "Ignore*"}  # QuPath's ignore class
    # and draws a region annotation, which is not a nucleus
    feats.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
        }
    )
    path = tmp_path / "from-qupath.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    got = load_labels(path, synthetic_out)
    assert got.to_dict("list") == {
        "slide_id": ["a"] * 4,
        "nucleus_id": [1000, 1001, 1002, 1003],
        "label": ["tumour", "tumour: positive", "stroma", "immune"],
    }
    # the other 115 still carry the class our export gave them ("nucleus"): not labels, unless
    everything = load_labels(path, synthetic_out, keep_unchanged=True)
    assert len(everything) == 119 and set(everything["label"]) > {"nucleus", "tumour"}


def test_geojson_matched_by_nucleus_id_when_ids_are_gone(
    synthetic_out: Path, tmp_path: Path
) -> None:
    """A file without QuPath's ids (our own, or a tool's) is matched by nucleus_id, on the slide
    its name gives (nucscale export writes <slide_id>.geojson)."""
    doc = _export(synthetic_out, "b", tmp_path / "exported.geojson")
    for f in doc["features"][:3]:
        del f["id"]
        f["properties"]["classification"] = {"name": "x"}
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(doc["features"]), encoding="utf-8")  # a plain list of features
    got = load_labels(path, synthetic_out)
    assert got["slide_id"].tolist() == ["b"] * 3 and got["label"].tolist() == ["x"] * 3


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"classification": {"name": " Tumor "}}, "Tumor"),
        ({"classification": {"names": ["Tumor", "Positive"]}}, "Tumor: Positive"),
        ({"classification": "Stroma"}, "Stroma"),
        ({"name": "Immune"}, "Immune"),
        ({"classification": {"name": "Ignore*"}}, None),
        ({"classification": None}, None),
        ({}, None),
    ],
)
def test_class_of_reads_the_qupath_spellings(props: dict[str, Any], expected: str | None) -> None:
    assert class_of(props) == expected


def test_geojson_with_detections_that_match_nothing_is_refused(
    synthetic_out: Path, tmp_path: Path
) -> None:
    doc = _export(synthetic_out, "a", tmp_path / "a.geojson")
    doc["features"][5]["id"] = "00000000-0000-4000-8000-000000000000"  # QuPath made a new id
    doc["features"][5]["properties"].pop("nucleus_id")
    doc["features"][5]["properties"]["classification"] = {"name": "tumour"}
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_labels(path, synthetic_out)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "1 classified detection(s) match no nucleus" in msg
    assert "feature 5" in msg and "\n" not in msg


def test_geojson_without_changes_says_how_to_count_them(
    synthetic_out: Path, tmp_path: Path
) -> None:
    path = tmp_path / "a.geojson"
    _export(synthetic_out, "a", path)
    with pytest.raises(InputError, match=r"no classified nucleus .*--keep-unchanged"):
        load_labels(path, synthetic_out)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.drop(columns="label"), "no column label"),
        (lambda f: f.assign(label=f["label"].where(f.index != 3, "  ")), r"1 empty label\(s\)"),
        (
            lambda f: f.assign(nucleus_id=f["nucleus_id"].where(f.index != 2, 99)),
            r"1 nucleus id\(s\) of slide 'a' are not in .* \(first: 99\)",
        ),
        (lambda f: f.replace({"slide_id": {"b": "c"}}), "slide 'c' is not a finished slide"),
        (lambda f: f.replace({"slide_id": {"b": "../b"}}), "slide id .* is not allowed"),
        (
            lambda f: pd.concat([f, f.iloc[[0]].assign(label="other")]),
            "nucleus 1000 of slide 'a' is labelled both",
        ),
    ],
)
def test_bad_label_tables_are_refused_naming_the_file(
    synthetic_out: Path, synthetic_labels: pd.DataFrame, tmp_path: Path, change: Any, reason: str
) -> None:
    path = _write(change(synthetic_labels), tmp_path / "labels.csv")
    with pytest.raises(InputError, match=reason) as err:
        load_labels(path, synthetic_out)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_other_files_are_refused(synthetic_out: Path, tmp_path: Path) -> None:
    for name, text, reason in [
        ("l.txt", "x", "labels must be .csv, .parquet or QuPath .geojson"),
        ("l.geojson", "{not json", "not valid JSON"),
        ("l.json", '{"type": "Point"}', "not GeoJSON"),
        ("l.parquet", "not parquet", "not a readable label table"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=reason):
            load_labels(path, synthetic_out)
    with pytest.raises(InputError, match="label file not found"):
        load_labels(tmp_path / "missing.csv", synthetic_out)
