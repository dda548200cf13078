"""Exports on small synthetic tables: classes and colours, empty slides, several row groups,
refusal of tables without outlines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from nucscale.errors import InputError
from nucscale.features import GEOMETRY, NUCLEUS_SCHEMA
from nucscale.store import nuclei_path, write_nuclei
from nucscale.store._export import export_slide, hovernet_mag

TYPES = {1: "neoplastic", 2: "inflammatory", 7: "mystery"}


def _tile(tile: int, types: list[int]) -> pa.Table:
    n = len(types)
    cols: dict[str, object] = {}
    for f in NUCLEUS_SCHEMA:
        if f.name == "type":
            cols[f.name] = pa.array(types, f.type)
        elif f.name == "type_name":
            cols[f.name] = pa.array([TYPES[t] for t in types])
        elif f.name == "nucleus_id":
            cols[f.name] = pa.array([(tile << 20) | (i + 1) for i in range(n)], f.type)
        elif f.name == GEOMETRY:
            cols[f.name] = pa.array(
                [shapely.box(10 * i, 50 * tile, 10 * i + 4, 50 * tile + 3).wkb for i in range(n)]
            )
        elif f.name in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
            x0, y0 = np.arange(n) * 10, np.full(n, 50 * tile)
            v = {"bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x0 + 4, "bbox_y1": y0 + 3}[f.name]
            cols[f.name] = pa.array(v, f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(np.full(n, tile), f.type)
        else:
            cols[f.name] = pa.array(np.linspace(0.5, 1.5, n), f.type)
    return pa.table(cols, schema=NUCLEUS_SCHEMA)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = nuclei_path(tmp_path, "s")
    write_nuclei(path, [_tile(0, [1, 2, 1]), _tile(3, [7, 2])], {"mpp_level0": "0.2527"})
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    return path


def test_geojson_classes_colours_and_stable_ids(table: Path, tmp_path: Path) -> None:
    dest = tmp_path / "a.geojson"
    assert export_slide(table, "qupath-geojson", dest, "s") == 5
    feats = json.loads(dest.read_text())["features"]
    classes = [f["properties"]["classification"] for f in feats]
    assert classes[0] == {"name": "neoplastic", "color": [255, 0, 0]}  # HoVer-Net's colours
    assert classes[1] == {"name": "inflammatory", "color": [0, 255, 0]}
    assert classes[3]["name"] == "mystery" and len(classes[3]["color"]) == 3
    again = tmp_path / "b.geojson"
    export_slide(table, "qupath-geojson", again, "s")
    assert [f["id"] for f in json.loads(again.read_text())["features"]] == [f["id"] for f in feats]
    other = tmp_path / "c.geojson"
    export_slide(table, "qupath-geojson", other, "another-slide")
    assert json.loads(other.read_text())["features"][0]["id"] != feats[0]["id"]


def test_hovernet_json_types_and_mag(table: Path, tmp_path: Path) -> None:
    dest = tmp_path / "h.json"
    export_slide(table, "hovernet-json", dest, "s")
    doc = json.loads(dest.read_text())
    assert doc["mag"] == 39.6 == hovernet_mag(0.2527)
    first = doc["nuc"][str(1)]
    assert first["type"] == 1 and first["bbox"] == [[0, 0], [3, 4]]
    assert sorted(first["contour"]) == [[0, 0], [0, 3], [4, 0], [4, 3]]  # the box corners
    assert doc["nuc"][str((3 << 20) | 1)]["type"] == 7


def test_empty_slide_exports_are_valid(tmp_path: Path) -> None:
    path = nuclei_path(tmp_path, "empty")
    write_nuclei(path, [], {})
    for fmt, name in (
        ("qupath-geojson", "e.geojson"),
        ("hovernet-json", "e.json"),
        ("csv", "e.csv"),
    ):
        assert export_slide(path, fmt, tmp_path / name, "empty") == 0
    assert json.loads((tmp_path / "e.geojson").read_text()) == {
        "type": "FeatureCollection",
        "features": [],
    }
    assert json.loads((tmp_path / "e.json").read_text()) == {"mag": None, "nuc": {}}
    csv = pd.read_csv(tmp_path / "e.csv")
    assert len(csv) == 0 and csv.columns[0] == "slide_id" and csv.columns[-1] == "geometry_wkt"


def test_version_1_tables_cannot_be_exported_with_outlines(tmp_path: Path) -> None:
    old = tmp_path / "v1.parquet"
    t = _tile(0, [1]).drop_columns([GEOMETRY])
    pq.write_table(t.replace_schema_metadata({"nucscale.schema_version": "1"}), old)
    with pytest.raises(InputError, match=r"v1\.parquet: schema version 1 table has no outlines"):
        export_slide(old, "qupath-geojson", tmp_path / "x.geojson", "s")
    assert not (tmp_path / "x.geojson").exists()
    with pytest.raises(ValueError, match="unknown export format 'kml'"):
        export_slide(old, "kml", tmp_path / "x.kml", "s")
