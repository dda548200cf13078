"""The finalised nucleus table: GeoParquet metadata, schema versions, docs/schema.md, the cohort
table and the OME-NGFF label and image pyramids."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader

from nucscale.features import GEOMETRY, NUCLEUS_SCHEMA, schema_markdown
from nucscale.store import (
    ManifestRow,
    SchemaVersionError,
    create_label_image,
    finish_label_image,
    level0,
    nuclei_path,
    read_nuclei,
    summarize,
    with_metadata,
    write_image,
    write_nuclei,
    write_slides_table,
)

ROOT = Path(__file__).resolve().parents[2]


def _table(n: int, tile: int, types: list[str] | None = None) -> pa.Table:
    """``n`` square nuclei of side 2 + i at x = 10 * i, y = 100 * tile."""
    cols: dict[str, pa.Array] = {}
    for f in NUCLEUS_SCHEMA:
        if f.name == "type_name":
            cols[f.name] = pa.array(types or ["nucleus"] * n)
        elif f.name == GEOMETRY:
            cols[f.name] = pa.array(
                [
                    shapely.box(10 * i, 100 * tile, 10 * i + 2 + i, 100 * tile + 2 + i).wkb
                    for i in range(n)
                ]
            )
        elif f.name in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
            x0, y0 = np.arange(n) * 10, np.full(n, 100 * tile)
            side = 2 + np.arange(n)
            value = {"bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x0 + side, "bbox_y1": y0 + side}
            cols[f.name] = pa.array(value[f.name], f.type)
        elif f.name == "area":
            cols[f.name] = pa.array((2.0 + np.arange(n)) ** 2, f.type)
        else:
            cols[f.name] = pa.array(np.full(n, tile), f.type)
    return pa.table(cols, schema=NUCLEUS_SCHEMA)


def _write_fragments(tmp_path: Path, tables: list[pa.Table]) -> list[Path]:
    paths = []
    for i, t in enumerate(tables):
        p = tmp_path / f"frag{i}.parquet"
        pq.write_table(t, p)
        paths.append(p)
    return paths


def test_geoparquet_metadata_and_geopandas_round_trip(tmp_path: Path) -> None:
    frags = _write_fragments(tmp_path, [_table(3, 0), _table(0, 1), _table(2, 2)])
    summary, bbox = summarize(frags)
    assert bbox == (0.0, 0.0, 24.0, 203.0)
    path = nuclei_path(tmp_path, "s")
    write_nuclei(path, (pq.read_table(f) for f in frags), {"segmenter": "x"}, bbox)
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo == {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon", "MultiPolygon"],
                "crs": None,
                "edges": "planar",
                "orientation": "counterclockwise",
                "bbox": [0.0, 0.0, 24.0, 203.0],
            }
        },
    }
    frame = gpd.read_parquet(path)
    assert frame.crs is None
    assert frame.geometry.area.tolist() == [4.0, 9.0, 16.0, 4.0, 9.0]
    assert frame.geometry.total_bounds.tolist() == [0.0, 0.0, 24.0, 203.0]
    assert summary["nuclei"] == 5 and summary["nuclei_by_type"] == {"nucleus": 5}
    assert summary["median_area"] == 9.0 and summary["mean_area"] == pytest.approx(42 / 5)


def test_field_units_and_descriptions_travel_in_the_file(tmp_path: Path) -> None:
    path = nuclei_path(tmp_path, "s")
    write_nuclei(path, [_table(1, 0)], {})
    field = pq.read_schema(path).field("area")
    assert field.metadata == {
        b"unit": "µm²".encode(),
        b"description": field.metadata[b"description"],
    }
    assert b"regionprops" in field.metadata[b"description"]


def test_docs_schema_lists_every_column_with_unit_and_definition() -> None:
    doc = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    assert schema_markdown() in doc  # regenerate the table from nucscale.features if this fails
    for name in NUCLEUS_SCHEMA.names:
        assert f"| `{name}` |" in doc


def test_reader_upgrades_version_1_and_refuses_unknown_versions(tmp_path: Path) -> None:
    v1 = tmp_path / "v1.parquet"
    old = _table(2, 0).drop_columns([GEOMETRY])
    pq.write_table(old.replace_schema_metadata({"nucscale.schema_version": "1"}), v1)
    table = read_nuclei(v1)
    assert table.schema.names == NUCLEUS_SCHEMA.names
    assert table.column(GEOMETRY).null_count == 2
    assert read_nuclei(v1, columns=["area"]).column_names == ["area"]

    future = tmp_path / "future.parquet"
    pq.write_table(_table(1, 0).replace_schema_metadata({"nucscale.schema_version": "7"}), future)
    with pytest.raises(
        SchemaVersionError, match=r"future\.parquet: schema version '7'; .*reads versions 1, 2"
    ):
        read_nuclei(future)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    with pytest.raises(SchemaVersionError, match=r"foreign\.parquet: no nucscale schema version"):
        read_nuclei(foreign)
    current = nuclei_path(tmp_path, "s")
    write_nuclei(current, [_table(2, 0)], {})
    assert read_nuclei(current).equals(_table(2, 0))


def test_summary_by_fragment_equals_the_summary_of_the_whole_table(tmp_path: Path) -> None:
    """summarize() reads one fragment at a time (type names dictionary-encoded, each file its
    own dictionary): counts, QC fractions, means, medians and the box equal those of the
    concatenated table, computed here directly."""
    from nucscale.analysis import qc_measures
    from nucscale.store._slides import KEY_FEATURES

    rng = np.random.default_rng(3)
    tables = [
        _table(4, 0, ["red cell", "nucleus", "nucleus", "red cell"]),
        _table(0, 1),
        _table(5, 2, ["inflammatory", "nucleus", "inflammatory", "nucleus", "nucleus"]),
        _table(3, 3, ["nucleus"] * 3),
    ]
    for i, t in enumerate(tables):  # varied values: medians and fractions mean something
        for name in ("area", "mean_r", "mean_g", "mean_b", "od_eosin", "solidity"):
            values = rng.uniform(1, 255, t.num_rows)
            col = t.schema.get_field_index(name)
            tables[i] = t = t.set_column(col, name, pa.array(values, t.schema.field(name).type))
    whole = pa.concat_tables(tables)
    summary, bbox = summarize(_write_fragments(tmp_path, tables))
    assert summary["nuclei"] == 12
    assert summary["nuclei_by_type"] == {"inflammatory": 2, "nucleus": 8, "red cell": 2}
    assert summary["qc"] == qc_measures(whole, "brightfield")
    assert set(summary["qc"]) == {"small_frac", "eosin_frac", "glass_frac"}
    for name in KEY_FEATURES:
        values = whole.column(name).to_numpy().astype(np.float64)
        assert summary[f"mean_{name}"] == float(values.mean())
        assert summary[f"median_{name}"] == float(np.median(values))
    boxes = [whole.column(c).to_numpy() for c in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")]
    assert bbox == (boxes[0].min(), boxes[1].min(), boxes[2].max(), boxes[3].max())


def test_cohort_table_joins_manifest_and_summaries(tmp_path: Path) -> None:
    frags = _write_fragments(tmp_path, [_table(3, 0, ["neoplastic", "inflammatory", "neoplastic"])])
    summary, bbox = summarize(frags)
    write_nuclei(
        nuclei_path(tmp_path, "a"),
        (pq.read_table(f) for f in frags),
        {"summary": json.dumps(summary), "vendor": "aperio"},
        bbox,
    )
    rows = [
        ManifestRow("a", "/x/a.svs", "done", nuclei=3, tissue_mm2=0.5, mpp=0.25, wall_s=2.0),
        ManifestRow("b", "/x/b.svs", "failed", error="/x/b.svs: truncated file"),
        ManifestRow("a", "/y/a.svs", "failed", error="duplicate slide id"),
    ]
    table = pq.read_table(write_slides_table(tmp_path, rows)).to_pylist()
    assert [r["slide_id"] for r in table] == ["a", "b"]
    a, b = table
    assert a["status"] == "done" and a["path"] == "/x/a.svs"
    assert dict(a["nuclei_by_type"]) == {"inflammatory": 1, "neoplastic": 2}
    assert a["nuclei_per_mm2"] == 6.0 and a["vendor"] == "aperio"
    assert a["median_area"] == 9.0 and a["wall_s"] == 2.0
    assert b["status"] == "failed" and b["error"] == "/x/b.svs: truncated file"
    assert b["nuclei_by_type"] is None and b["median_area"] is None


def test_cohort_table_marks_done_slides_whose_table_is_gone(tmp_path: Path) -> None:
    """A table deleted (or damaged) after its slide was done: the cohort table is still
    written, the slide says ``missing`` and why, the others are unaffected."""
    frags = _write_fragments(tmp_path, [_table(2, 0)])
    summary, bbox = summarize(frags)
    meta = {"summary": json.dumps(summary)}
    write_nuclei(nuclei_path(tmp_path, "kept"), (pq.read_table(f) for f in frags), meta, bbox)
    damaged = nuclei_path(tmp_path, "damaged")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not parquet")
    rows = [
        ManifestRow(sid, f"/x/{sid}.svs", "done", nuclei=2, tissue_mm2=1.0)
        for sid in ("kept", "deleted", "damaged")
    ]
    written = pq.read_table(write_slides_table(tmp_path, rows))
    table = {r["slide_id"]: r for r in written.to_pylist()}
    assert table["kept"]["status"] == "done" and table["kept"]["median_area"] is not None
    deleted, bad = table["deleted"], table["damaged"]
    assert deleted["status"] == "missing" and bad["status"] == "missing"
    assert deleted["error"] == (
        f"{nuclei_path(tmp_path, 'deleted')}: nucleus table missing; "
        "run the slide again to recompute it"
    )
    assert bad["error"].startswith(f"{damaged}: not a readable nucleus table (")
    assert "\n" not in bad["error"] and deleted["nuclei"] == 2 and deleted["median_area"] is None


def test_label_pyramid_is_ome_ngff_readable_by_ome_zarr(tmp_path: Path) -> None:
    path = tmp_path / "labels" / "s.zarr"
    create_label_image(path, (600, 530), 128, {"slide_id": "s"})
    labels = np.zeros((600, 530), np.int64)
    labels[10:30, 20:50] = (5 << 20) | 1
    labels[500:600, 400:530] = (7 << 20) | 2
    level0(path)[:] = labels
    assert finish_label_image(path, 0.5, "../../images/s.zarr") == 2  # 600x530, 300x265
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    assert attrs["ome"]["image-label"] == {
        "version": "0.5",
        "source": {"image": "../../images/s.zarr"},
    }
    assert attrs["nucscale"] == {"slide_id": "s"}
    nodes = list(Reader(parse_url(str(path)))())
    node = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    assert any(isinstance(s, Multiscales) for s in node.specs)
    assert [d.shape for d in node.data] == [(600, 530), (300, 265)]
    assert all(np.issubdtype(d.dtype, np.integer) for d in node.data)
    np.testing.assert_array_equal(np.asarray(node.data[0]), labels)
    np.testing.assert_array_equal(np.asarray(node.data[1]), labels[::2, ::2])
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[0.5, 0.5], [1.0, 1.0]]
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer", "micrometer"]


def test_image_pyramid_is_channel_first_mean_downsampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (520, 700, 3), dtype=np.uint8)
    src = zarr.create_array(
        str(tmp_path / "src.zarr"), shape=rgb.shape, chunks=(256, 256, 3), dtype="uint8"
    )
    src[:] = rgb
    path = tmp_path / "images" / "s.zarr"
    assert write_image(path, src, 0.5, "s") == 2
    (node,) = [n for n in Reader(parse_url(str(path)))() if n.data]
    assert [d.shape for d in node.data] == [(3, 520, 700), (3, 260, 350)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), np.moveaxis(rgb, -1, 0))
    block = rgb[:2, :2].astype(np.float32).mean(axis=(0, 1))
    np.testing.assert_array_equal(
        np.asarray(node.data[1])[:, 0, 0], np.rint(block).astype(np.uint8)
    )
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]


def test_with_metadata_always_sets_version_and_geo() -> None:
    schema = with_metadata(NUCLEUS_SCHEMA, {"a": "1"})
    assert schema.metadata[b"nucscale.schema_version"] == b"2"
    assert json.loads(schema.metadata[b"geo"])["primary_column"] == GEOMETRY
