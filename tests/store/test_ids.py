"""Slide ids: one rule (:func:`check_slide_id`) for every id that names a path, and an id reads
back from the hive folder exactly as it was written."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from nucscale.errors import InputError
from nucscale.pipeline import resolve_inputs
from nucscale.store import (
    ManifestRow,
    check_slide_id,
    clean_slide_id,
    image_path,
    labels_path,
    manifest_path,
    nuclei_path,
    read_manifest,
    write_manifest,
)

#: Ids that look odd but are allowed: each reads back unchanged from its hive folder.
AWKWARD = ["case 41", "a+b", "Präparat_ü", "a#b", "it's", "a&b", "x;y", "(1)", "a,b", "~x",
           'a"b', "a:b", "a{b}", "a.b", "-x", "a..b", "x" * 200]  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("case%2041", "'%' is URI-decoded"),
        ("50%", "'%' is URI-decoded"),
        ("a/../../x", "'/' is a path separator"),
        ("a\\b", "path separator"),
        ("..", "leading '.'"),
        (".hidden", "leading '.'"),
        ("x=y", "hive partition"),
        ("a*b", "glob pattern"),
        ("a?b", "glob pattern"),
        ("a[1]", "glob pattern"),
        ("tab\there", "control character"),
        ("", "1 to 200 characters"),
        ("x" * 201, "1 to 200 characters"),
    ],
)
def test_refused_ids_say_why(bad: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as err:
        check_slide_id(bad, "cohort.csv")
    assert str(err.value).startswith("cohort.csv: slide id ") and "\n" not in str(err.value)
    for build in (nuclei_path, labels_path, image_path):
        with pytest.raises(InputError, match=why):
            build(Path("out"), bad)


def test_hive_folders_uri_decode_percent(tmp_path: Path) -> None:
    """Why '%' is refused: pyarrow and DuckDB decode %XX in hive folder names."""
    f = tmp_path / "nuclei" / "slide_id=case%2041" / "part-0.parquet"
    f.parent.mkdir(parents=True)
    pq.write_table(pa.table({"v": [1]}), f)
    part = ds.partitioning(pa.schema([("slide_id", pa.string())]), flavor="hive")
    read = ds.dataset([str(f)], partitioning=part, partition_base_dir=str(tmp_path / "nuclei"))
    assert read.to_table().column("slide_id").to_pylist() == ["case 41"]
    sql = f"SELECT slide_id FROM read_parquet('{f}', hive_partitioning = true)"
    assert duckdb.sql(sql).fetchall() == [("case 41",)]


def test_allowed_ids_read_back_unchanged(tmp_path: Path) -> None:
    """Folder name == id for every allowed id: pyarrow and DuckDB read back what was written."""
    files = []
    for sid in AWKWARD:
        path = nuclei_path(tmp_path, check_slide_id(sid, "test"))
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"v": [1]}), path)
        files.append(str(path))
    part = ds.partitioning(pa.schema([("slide_id", pa.string())]), flavor="hive")
    read = ds.dataset(files, partitioning=part, partition_base_dir=str(tmp_path / "nuclei"))
    assert sorted(read.to_table().column("slide_id").to_pylist()) == sorted(AWKWARD)
    for sid, f in zip(AWKWARD, files, strict=True):  # one file each: no id is a glob pattern
        quoted = f.replace("'", "''")
        got = duckdb.sql(f"SELECT slide_id FROM read_parquet('{quoted}', hive_partitioning = true)")
        assert got.fetchall() == [(sid,)]


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [("case%2041", "case_2041"), ("a[1]*?", "a_1___"), ("..x=y", "x_y"), ("...", "slide")],
)
def test_clean_ids_are_allowed(name: str, cleaned: str) -> None:
    assert clean_slide_id(name) == cleaned
    assert check_slide_id(clean_slide_id(name), "test") == cleaned


def test_default_ids_from_file_names(tmp_path: Path) -> None:
    long = tmp_path / ("y" * 240 + ".svs")
    slides, rejected = resolve_inputs([str(tmp_path / "case%2041.svs"), str(long)])
    assert [s.slide_id for s in slides] == ["case_2041", "y" * 200] and not rejected


def test_csv_ids_are_checked_before_anything_else(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("path,slide_id,mpp\nx.svs,case%2041,0.25\ny.svs,../y,-1\nz.svs,ok,\n")
    slides, rejected = resolve_inputs([str(csv)])
    assert [s.slide_id for s in slides] == ["ok"]
    assert [r.slide_id for r in rejected] == ["x", "y"]  # filed under allowed ids
    assert "line 2: slide id 'case%2041' is not allowed: '%'" in rejected[0].reason
    assert "line 3: slide id '../y' is not allowed" in rejected[1].reason


def test_manifest_ids_are_checked_on_write_and_read(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"manifest\.parquet: slide id '\.\./x'"):
        write_manifest(tmp_path, [ManifestRow("../x", "/x.svs", "failed")])
    assert not manifest_path(tmp_path).exists()
    write_manifest(tmp_path, [ManifestRow("a", "/a.svs", "done")])
    table = pq.read_table(manifest_path(tmp_path))
    ids = table.column("slide_id").to_pylist()
    edited = table.set_column(0, "slide_id", [[*ids[:-1], f"a{os.sep}..{os.sep}x"]])
    pq.write_table(edited, manifest_path(tmp_path))
    with pytest.raises(InputError, match=r"manifest\.parquet: slide id 'a/\.\./x' is not allowed"):
        read_manifest(tmp_path)
