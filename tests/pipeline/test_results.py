"""The results of a real run, opened the ways users open them: GeoParquet (geopandas, DuckDB
spatial), OME-Zarr labels (ome-zarr-py, as napari reads them), the README's SQL examples,
`nucscale query`, the three exports round-tripped, and the QC report."""

from __future__ import annotations

import html
import json
import re
import shutil
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from PIL import Image

import nucscale
from nucscale.features import NUCLEUS_SCHEMA
from nucscale.store import (
    ManifestRow,
    nuclei_path,
    open_labels,
    read_metadata,
    read_nuclei,
    summarize,
    write_manifest,
    write_nuclei,
    write_slides_table,
)

SLIDE = "CMU-1-Small-Region"
README = Path(__file__).resolve().parents[2] / "README.md"


def _table(out: Path) -> pd.DataFrame:
    return read_nuclei(nuclei_path(out, SLIDE)).to_pandas()


def test_cmu1_table_is_geoparquet_with_outlines_and_provenance(cmu1_run: Path) -> None:
    path = nuclei_path(cmu1_run, SLIDE)
    frame = gpd.read_parquet(path)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == NUCLEUS_SCHEMA
    assert frame.crs is None and len(frame) == table.num_rows > 2000
    assert frame.geometry.is_valid.all()
    assert (frame.geom_type == "Polygon").mean() > 0.95  # MultiPolygon: pieces meeting at corners
    # the outline traces the pixel edges: its bounds are the bbox columns and its area the
    # nucleus's pixel count with holes filled (a nucleus in pieces: its largest piece)
    b = frame.geometry.bounds
    assert (b.minx >= frame.bbox_x0).all() and (b.maxx <= frame.bbox_x1).all()
    assert (b.miny >= frame.bbox_y0).all() and (b.maxy <= frame.bbox_y1).all()
    filled_px = np.rint(frame["filled_area"] / 0.499**2)
    whole = (
        (frame.geometry.area == filled_px) & (b.minx == frame.bbox_x0) & (b.maxy == frame.bbox_y1)
    )
    assert (frame.geometry.area <= filled_px).all() and whole.mean() > 0.99, whole.mean()
    # row groups are tiles in (row, col) order: statistics let readers prune
    f = pq.ParquetFile(path)
    keys = []
    for i in range(f.metadata.num_row_groups):
        rg = f.metadata.row_group(i)
        stats = {
            rg.column(j).path_in_schema: rg.column(j).statistics for j in range(rg.num_columns)
        }
        assert stats["tile_row"].min == stats["tile_row"].max
        keys.append((stats["tile_row"].min, stats["tile_col"].min))
    assert keys == sorted(keys) and len(keys) > 10
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["columns"]["geometry"]["bbox"] == [
        float(frame.bbox_x0.min()),
        float(frame.bbox_y0.min()),
        float(frame.bbox_x1.max()),
        float(frame.bbox_y1.max()),
    ]
    meta = read_metadata(path)
    for key in (
        "version",
        "model",
        "weights_sha256",
        "command",
        "started",
        "finished",
        "mpp",
        "mpp_level0",
        "tile_size",
        "halo",
        "schema_version",
        "summary",
    ):
        assert key in meta, key
    assert meta["model"] == "baseline" and meta["tile_size"] == "512"
    assert meta["started"] <= meta["finished"]
    assert json.loads(meta["summary"])["nuclei"] == table.num_rows


def test_duckdb_spatial_and_pyarrow_views_agree(cmu1_run: Path) -> None:
    res = nucscale.open_results(cmu1_run)
    assert res.spatial, "DuckDB spatial extension did not load"
    frame = gpd.read_parquet(nuclei_path(cmu1_run, SLIDE))
    box = shapely.box(1000, 1000, 1500, 1500)
    expected = int(frame.geometry.intersects(box).sum())
    got = res.sql(
        "SELECT count(*) FROM nuclei WHERE ST_Intersects(geometry, "
        "ST_MakeEnvelope(1000, 1000, 1500, 1500))"
    ).fetchone()
    assert got == (expected,) and expected > 20
    area = res.sql("SELECT sum(ST_Area(geometry)) FROM nuclei").fetchone()
    assert area is not None and area[0] == pytest.approx(frame.geometry.area.sum())
    every = res.to_pandas()
    assert len(every) == len(frame) and set(every.slide_id) == {SLIDE}

    sel = res.to_pandas(ds.field("area") > 60, columns=["slide_id", "area"])
    assert len(sel) == int((frame["area"] > 60).sum()) and list(sel.columns) == ["slide_id", "area"]
    slides = res.slides()
    assert slides.loc[0, "nuclei"] == len(frame) and slides.loc[0, "status"] == "done"
    res.close()


def test_labels_open_as_ome_ngff_label_image(cmu1_run: Path) -> None:
    path = cmu1_run / "labels" / f"{SLIDE}.zarr"
    nodes = list(Reader(parse_url(str(path)))())
    node = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    assert any(isinstance(s, Multiscales) for s in node.specs)
    shapes = [d.shape for d in node.data]
    assert shapes[0] == (2967, 2220) and len(shapes) == 4
    assert shapes[1] == (1484, 1110)
    level0 = np.asarray(node.data[0])
    np.testing.assert_array_equal(level0, open_labels(cmu1_run, SLIDE)[:])
    np.testing.assert_array_equal(np.asarray(node.data[2]), level0[::4, ::4])
    ids = np.unique(level0)
    table = _table(cmu1_run)
    assert set(ids[ids > 0].tolist()) == set(table.nucleus_id.tolist())  # every nucleus painted


def _sql_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Querying results") : text.index("### Exports")]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 4, "the README's four query examples"
    return blocks


def _typed_cohort(cmu1_run: Path, out: Path) -> pd.DataFrame:
    """Two slides made from the real CMU-1 table, with PanNuke type names given by area
    (a stand-in classifier, so the typed examples have something to count)."""
    base = read_nuclei(nuclei_path(cmu1_run, SLIDE))
    area = base.column("area").to_numpy()
    frames = []
    for sid, cut in (("s-high", np.quantile(area, 0.5)), ("s-low", np.quantile(area, 0.95))):
        names = np.where(area > cut, "neoplastic", "inflammatory")
        names[::7] = "connective"
        t = base.set_column(base.schema.get_field_index("type_name"), "type_name", [names.tolist()])
        frag = out / f"{sid}.frag.parquet"
        pq.write_table(t, frag)
        summary, bbox = summarize([frag])
        write_nuclei(nuclei_path(out, sid), [t], {"summary": json.dumps(summary)}, bbox)
        frag.unlink()
        write_manifest(
            out, [ManifestRow(sid, f"/x/{sid}.svs", "done", nuclei=t.num_rows, tissue_mm2=0.5)]
        )
        frames.append(t.to_pandas().assign(slide_id=sid))
    write_slides_table(
        out,
        [
            ManifestRow(s, f"/x/{s}.svs", "done", nuclei=base.num_rows, tissue_mm2=0.5)
            for s in ("s-high", "s-low")
        ],
    )
    return pd.concat(frames)


def test_readme_query_examples_answer_their_questions(cmu1_run: Path, tmp_path: Path) -> None:
    per_mm2, area_by_type, inflamed, in_box = _sql_blocks()
    # on the real CMU-1 run (one type): every example runs, the untyped ones give real answers
    res = nucscale.open_results(cmu1_run)
    table = _table(cmu1_run)
    tissue = res.slides().loc[0, "tissue_mm2"]
    assert res.sql(per_mm2).fetchall() == [
        (SLIDE, "nucleus", len(table), round(len(table) / tissue, 1))
    ]
    assert res.sql(area_by_type).fetchall() == []  # the baseline has no tumour/lymphocyte class
    assert res.sql(inflamed).fetchall() == []
    frame = gpd.read_parquet(nuclei_path(cmu1_run, SLIDE))
    hit = frame[frame.geometry.intersects(shapely.box(1000, 1000, 1500, 1500))]
    assert [r[1] for r in res.sql(in_box).fetchall()] == sorted(hit.nucleus_id.tolist())
    res.close()
    # on a typed cohort the typed examples count what pandas counts
    typed = _typed_cohort(cmu1_run, tmp_path)
    res = nucscale.open_results(tmp_path)
    got = res.sql(area_by_type).fetchall()
    sub = typed[typed.type_name.isin(["neoplastic", "inflammatory"])]
    want = sub.groupby("type_name")["area"].agg(["size", "median"])
    assert [(n, c, m) for n, c, _, m, _ in got] == [
        (name, int(row["size"]), round(row["median"], 1)) for name, row in want.iterrows()
    ]
    frac = typed.groupby("slide_id").type_name.apply(lambda s: (s == "inflammatory").mean())
    rows = res.sql(inflamed).fetchall()
    assert [r[0] for r in rows] == frac[frac > 0.1].sort_values(ascending=False).index.tolist()
    assert rows[0][2] == pytest.approx(frac.max())
    counts = res.sql(per_mm2).fetchall()
    assert sum(r[2] for r in counts) == len(typed) and len(counts) == 6
    res.close()


def test_query_cli_prints_writes_and_reports_bad_sql(
    cmu1_run: Path, tmp_path: Path, nucscale_cli
) -> None:
    proc = nucscale_cli(
        "query", str(cmu1_run), "SELECT slide_id, count(*) AS n FROM nuclei GROUP BY ALL"
    )
    assert proc.returncode == 0, proc.stderr
    assert SLIDE in proc.stdout and str(len(_table(cmu1_run))) in proc.stdout
    dest = tmp_path / "big.parquet"
    proc = nucscale_cli(
        "query",
        str(cmu1_run),
        "SELECT nucleus_id, area FROM nuclei WHERE area > 60",
        "--to",
        str(dest),
    )
    assert proc.returncode == 0, proc.stderr
    table = _table(cmu1_run)
    assert sorted(pq.read_table(dest).column("nucleus_id").to_pylist()) == sorted(
        table.nucleus_id[table["area"] > 60].tolist()
    )
    proc = nucscale_cli("query", str(cmu1_run), "SELECT no_such_column FROM nuclei")
    assert proc.returncode == 2
    assert "query failed" in proc.stderr and "no_such_column" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = nucscale_cli("query", str(tmp_path), "SELECT 1")
    assert proc.returncode == 2 and "not a nucscale output folder" in proc.stderr


@pytest.fixture(scope="module")
def exported(cmu1_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the CMU-1 run with all three exports and the report written by the CLI."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(cmu1_run, out, ignore=shutil.ignore_patterns(".work"))
    for args in (
        ["export", str(out), "--format", f] for f in ("qupath-geojson", "hovernet-json", "csv")
    ):
        done = subprocess.run(
            [sys.executable, "-m", "nucscale", *args], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "nucscale", "report", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return out


def test_qupath_geojson_round_trip(exported: Path) -> None:
    table = _table(exported)
    doc = json.loads((exported / "exports" / f"{SLIDE}.geojson").read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    assert len(feats) == len(table)
    ids = [f["id"] for f in feats]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i).version == 5 for i in ids)
    by_id = table.set_index("nucleus_id")
    for f in feats:
        assert f["type"] == "Feature"
        props = f["properties"]
        assert props["objectType"] == "detection"  # where QuPath looks for the object type
        assert props["classification"] == {"name": "nucleus", "color": [255, 200, 0]}
        row = by_id.loc[props["nucleus_id"]]
        assert props["measurements"]["area (µm²)"] == row["area"]
        assert props["measurements"]["solidity"] == row["solidity"]  # unitless: bare name
        assert props["measurements"]["od_haematoxylin (OD/6)"] == row["od_haematoxylin"]
        geom = shapely.geometry.shape(f["geometry"])
        assert geom.equals_exact(shapely.from_wkb(row["geometry"]), tolerance=0)


def test_hovernet_json_round_trip(exported: Path) -> None:
    table = _table(exported)
    doc = json.loads((exported / "exports" / f"{SLIDE}.json").read_text(encoding="utf-8"))
    assert doc["mag"] == 20.0  # 0.499 µm/px
    nuc = doc["nuc"]
    assert sorted(nuc, key=int) == [str(i) for i in sorted(table.nucleus_id)]
    for row in table.sample(200, random_state=0).itertuples():
        item = nuc[str(row.nucleus_id)]
        assert item["bbox"] == [[row.bbox_y0, row.bbox_x0], [row.bbox_y1, row.bbox_x1]]
        assert item["centroid"] == [row.centroid_x, row.centroid_y]  # x, y as HoVer-Net
        contour = np.array(item["contour"])
        assert contour.dtype.kind == "i" and contour.shape[1] == 2 and len(contour) >= 3
        assert (contour[:, 0] >= row.bbox_x0).all() and (contour[:, 0] <= row.bbox_x1).all()
        assert (contour[:, 1] >= row.bbox_y0).all() and (contour[:, 1] <= row.bbox_y1).all()
        assert item["type"] == row.type and item["type_prob"] == pytest.approx(row.type_prob)


def test_csv_round_trip(exported: Path) -> None:
    table = _table(exported)
    csv = pd.read_csv(exported / "exports" / f"{SLIDE}.csv")
    assert list(csv.columns) == [
        "slide_id",
        *[c for c in table.columns if c != "geometry"],
        "geometry_wkt",
    ]
    assert (csv.slide_id == SLIDE).all() and len(csv) == len(table)
    for col in ("nucleus_id", "bbox_x0", "area", "centroid_x", "eccentricity", "type_name"):
        assert csv[col].tolist() == table[col].tolist(), col
    np.testing.assert_allclose(csv["mean_r"], table["mean_r"], rtol=1e-6)
    back = shapely.from_wkt(csv.geometry_wkt.to_numpy())
    assert all(shapely.equals_exact(back, shapely.from_wkb(table.geometry.to_numpy()), 0))


def test_report_files(exported: Path) -> None:
    folder = exported / "report"
    page = (folder / "index.html").read_text(encoding="utf-8")
    table = _table(exported)
    assert SLIDE in page and f"{len(table):,} nuclei" in page
    assert "<p>1 slide: " in page  # not "1 slides"
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for src in re.findall(r'src="([^"]+)"', page):
        assert (folder / src).exists(), src
    for name in ("hist-area.png", "hist-convex_area.png", "hist-equivalent_diameter.png"):
        assert f'src="{name}"' in page
        assert Image.open(folder / name).size == (500, 320)
    thumb = np.asarray(Image.open(folder / f"{SLIDE}-thumb.png").convert("RGB"))
    assert max(thumb.shape[:2]) == 1200
    gold = np.all(thumb == (255, 200, 0), axis=-1).sum()
    green = np.all(thumb == (20, 180, 60), axis=-1).sum()
    assert gold > 2000 and green > 500  # nuclei and the tissue outline are drawn
    zoom = np.asarray(Image.open(folder / f"{SLIDE}-zoom.png").convert("RGB"))
    assert zoom.shape == (640, 640 * 2 + 8, 3)  # the image | the image with outlines
    plain, outlined = zoom[:, :640], zoom[:, 648:]
    assert np.all(plain == (255, 200, 0), axis=-1).mean() < 0.001
    assert np.all(outlined == (255, 200, 0), axis=-1).mean() > 0.02
    # the QC flags of slides.parquet are on the page, in words
    flags = pd.read_parquet(exported / "slides.parquet").set_index("slide_id").loc[SLIDE].qc_flags
    if len(flags):
        assert "looks implausible" in page
        assert all(html.escape(f) in page for f in flags)
    else:
        assert '<span class="done">ok</span>' in page
    if (folder / f"{SLIDE}-suspect.png").exists():
        suspect = np.asarray(Image.open(folder / f"{SLIDE}-suspect.png").convert("RGB"))
        assert suspect.shape == zoom.shape
        assert "where most objects look implausible" in page


def test_export_and_report_errors_are_one_line(
    cmu1_run: Path, tmp_path: Path, nucscale_cli
) -> None:
    proc = nucscale_cli("export", str(cmu1_run), "--format", "shapefile")
    assert proc.returncode == 2 and "qupath-geojson" in proc.stderr
    proc = nucscale_cli(
        "export",
        str(cmu1_run),
        "--format",
        "csv",
        "--slide",
        "nope",
        "--to",
        str(tmp_path / "x.csv"),
    )
    assert proc.returncode == 1 and "no nucleus table for slide 'nope'" in proc.stdout + proc.stderr
    assert not (tmp_path / "x.csv").exists()
    proc = nucscale_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not a nucscale output folder" in proc.stderr


def test_cohort_with_a_failed_slide(cmu1_crop_tiff, baseline_cli, tmp_path: Path) -> None:
    """slides.parquet and the report list a failed slide with its reason; exports skip it."""
    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 600, 900, 700, 500)
    bad = tmp_path / "broken.svs"
    bad.write_bytes(crop.read_bytes()[:5000])  # truncated
    inputs = tmp_path / "cohort.csv"
    inputs.write_text(f"path\n{crop}\n{bad}\n")
    out = tmp_path / "out"
    proc = baseline_cli(inputs, out, 1)
    assert proc.returncode == 1  # one slide failed
    slides = pq.read_table(out / "slides.parquet").to_pandas().set_index("slide_id")
    assert slides.loc["crop", "status"] == "done" and slides.loc["broken", "status"] == "failed"
    assert str(bad) in slides.loc["broken", "error"]
    assert slides.loc["crop", "nuclei"] == pq.read_metadata(nuclei_path(out, "crop")).num_rows > 50
    assert dict(slides.loc["crop", "nuclei_by_type"]) == {"nucleus": slides.loc["crop", "nuclei"]}
    assert slides.loc["crop", "nuclei_per_mm2"] == pytest.approx(
        slides.loc["crop", "nuclei"] / slides.loc["crop", "tissue_mm2"]
    )
    assert pd.isna(slides.loc["broken", "median_area"])
    import subprocess
    import sys

    for args in (["export", str(out), "--format", "csv"], ["report", str(out)]):
        done = subprocess.run(
            [sys.executable, "-m", "nucscale", *args], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["crop.csv"]
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "1 done" in page and "1 failed" in page and "broken" in page
    assert (out / "report" / "crop-thumb.png").exists()
    assert not (out / "report" / "broken-thumb.png").exists()


def test_save_image_writes_the_analysed_image_beside_the_labels(
    cmu1_crop_tiff, nucscale_cli, tmp_path: Path
) -> None:
    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 600, 900, 700, 600)
    out = tmp_path / "out"
    proc = nucscale_cli(
        "run",
        str(crop),
        "--out",
        str(out),
        "--workers",
        "1",
        "--dashboard",
        ":0",
        "--model",
        "baseline",
        "--save-image",
    )
    assert proc.returncode == 0, proc.stderr
    image = out / "images" / "crop.zarr"
    (node,) = [n for n in Reader(parse_url(str(image)))() if n.data]
    assert [d.shape for d in node.data] == [(3, 600, 700), (3, 300, 350)]
    from nucscale.io import open_slide

    with open_slide(crop) as s:
        rgb = s.read_region(0, 0, 0, 700, 600)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(node.data[0]), 0, -1), rgb)
    nodes = list(Reader(parse_url(str(out / "labels" / "crop.zarr")))())
    assert any(isinstance(s, Label) for n in nodes for s in n.specs)
    attrs = json.loads((out / "labels" / "crop.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["image-label"]["source"] == {"image": "../../images/crop.zarr"}
    # ome-zarr-py follows the source link to the image: both are among the nodes it returns
    assert any(n.zarr.path.rstrip("/").endswith("images/crop.zarr") for n in nodes)
