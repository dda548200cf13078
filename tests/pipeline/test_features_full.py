"""--features full: CellProfiler-style columns in OUT/features, equal whatever the tile size,
consistent with the nucleus table, queryable."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.features._cellprofiler import FULL_SCHEMA
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.query import open_results
from nucscale.store import features_path, nuclei_path, read_metadata

pytestmark = pytest.mark.slow


def _run(slide: Path, tile: int, out: Path) -> str:
    slides, rejected = resolve_inputs([str(slide)])
    settings = Settings(segmenter="baseline", tile=tile, tissue="none", features="full")
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings, out)
    assert rows[0].status == "done", rows[0].error
    return slides[0].slide_id


def _by_centroid(out: Path, sid: str) -> dict[tuple[float, float], dict]:
    nuclei = pq.read_table(nuclei_path(out, sid), columns=["nucleus_id", "centroid_x",
                                                            "centroid_y"]).to_pylist()  # fmt: skip
    at = {r["nucleus_id"]: (round(r["centroid_x"], 6), round(r["centroid_y"], 6)) for r in nuclei}
    rows = pq.read_table(features_path(out, sid)).to_pylist()
    return {at[r.pop("nucleus_id")]: r for r in rows}


def test_full_features_are_the_same_for_every_tile_size(
    cmu1_crop_tiff: Callable[..., Path], tmp_path: Path
) -> None:
    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 600, 1200, 800, 600)
    sid = _run(crop, 4096, tmp_path / "whole")
    whole = _by_centroid(tmp_path / "whole", sid)
    assert len(whole) > 150
    tiled = _by_centroid(tmp_path / "tiled", _run(crop, 256, tmp_path / "tiled"))
    assert tiled.keys() == whole.keys()
    for key, row in whole.items():
        for name, value in row.items():
            other = tiled[key][name]
            assert other == value or (np.isnan(other) and np.isnan(value)), (key, name)


def test_full_table_agrees_with_the_nucleus_table(
    cmu1_crop_tiff: Callable[..., Path], tmp_path: Path
) -> None:
    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 600, 1200, 600, 500)
    out = tmp_path / "out"
    sid = _run(crop, 256, out)
    table = pq.read_table(features_path(out, sid))
    assert table.schema.remove_metadata() == FULL_SCHEMA
    nuclei = pq.read_table(nuclei_path(out, sid)).sort_by("nucleus_id")
    assert table["nucleus_id"].to_pylist() == nuclei["nucleus_id"].to_pylist()
    # the mean of the nuclear signal is the nucleus table's mean haematoxylin density
    np.testing.assert_allclose(
        table["mean_intensity"].to_numpy(), nuclei["od_haematoxylin"].to_numpy(), rtol=1e-5
    )
    assert (table["min_intensity"].to_numpy() <= table["median_intensity"].to_numpy()).all()
    assert np.nanmax(table["nearest_neighbour_distance"].to_numpy()) < 100  # µm, dense tissue
    assert (table["neighbours"].to_numpy() >= 0).all()
    fmin, fmax = table["feret_min_um"].to_numpy(), table["feret_max_um"].to_numpy()
    assert (fmin > 0).all() and (fmin <= fmax).all()
    np.testing.assert_allclose(table["zernike_0_0"].to_numpy(), 1 / np.pi)  # mean of R_00 = 1
    assert json.loads(table.schema.metadata[b"nucscale.features"])["zernike_degree"] == 9
    assert read_metadata(nuclei_path(out, sid))["features"] == "full"
    res = open_results(out)
    n = res.sql(
        "SELECT count(*) FROM features f JOIN nuclei n USING (slide_id, nucleus_id)"
    ).fetchone()[0]
    assert n == nuclei.num_rows
