"""The cell-class tables in the results (``nucscale.store._classes``): the ``classes`` view,
also over slides predicted by models with different classes; classes of an earlier nucleus
table and unknown versions; the class colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.classify import prediction_table
from nucscale.errors import InputError
from nucscale.query import open_results
from nucscale.store import class_colours, classes_path, read_classes, write_classes
from nucscale.store._classes import nuclei_stamp


def test_class_colours_are_distinct_and_keep_hovernet_names() -> None:
    colours = class_colours(["connective", "inflammatory", "neoplastic", "x", "y", "z"])
    assert colours["neoplastic"] == (255, 0, 0) and colours["inflammatory"] == (0, 255, 0)
    assert len(set(colours.values())) == 6
    assert class_colours(["a", "b"])["a"] == class_colours(["a", "c"])["a"]  # by position


def _predict(out: Path, sid: str, classes: list[str], sha: str) -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(len(classes)), size=3)
    table = prediction_table(np.array([1, 2, 3]), proba, classes, sha)
    write_classes(classes_path(out, sid), table, {"model_sha256": sha, **nuclei_stamp(out, sid)})


def test_classes_view_unifies_slides_of_different_models(results_out: Path) -> None:
    _predict(results_out, "a", ["pale", "dark"], "m1")
    _predict(results_out, "b", ["dark", "immune", "pale"], "m2")
    with open_results(results_out) as res:
        rel = res.sql("SELECT * FROM classes ORDER BY slide_id, nucleus_id")
        rows = rel.fetchall()
        cols = rel.columns
    assert cols == [
        "nucleus_id", "class", "p_pale", "p_dark", "model_sha256", "p_immune", "slide_id",
    ]  # fmt: skip
    immune = cols.index("p_immune")
    assert [r[immune] is None for r in rows] == [True] * 3 + [False] * 3
    assert [(r[-1], r[4]) for r in rows] == [("a", "m1")] * 3 + [("b", "m2")] * 3


def test_empty_classes_view_and_unknown_versions(results_out: Path) -> None:
    with open_results(results_out) as res:
        assert res.sql("SELECT count(*) FROM classes").fetchone() == (0,)
    _predict(results_out, "a", ["p", "q"], "m")
    assert read_classes(results_out, "a") is not None
    path = classes_path(results_out, "a")
    table = read_classes(results_out, "a")
    assert table is not None
    write_classes(path, table, {})  # no nuclei stamp: an earlier table's classes
    assert read_classes(results_out, "a") is None
    meta = dict(pq.read_schema(path).metadata or {})
    meta[b"nucscale.classes_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(InputError, match="class table version '99'"):
        read_classes(results_out, "a")
