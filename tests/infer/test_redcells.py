"""--model redcells on generated smears (synthetic data: no labelled real smear exists here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.analysis._metrics import panoptic_quality
from nucscale.infer._redcells import RedCellSegmenter
from nucscale.smear import SmearSpec, generate_smear, segmentation_scores, write_smears
from nucscale.store import open_labels


def test_cells_are_found_and_platelets_are_not() -> None:
    seg = RedCellSegmenter()
    scores = []
    for seed in range(3):
        s = generate_smear(SmearSpec(), seed)
        cal = seg.calibrate(s.rgb[::4, ::4], np.zeros(s.rgb[::4, ::4].shape[:2], dtype=bool))
        out = seg.segment(s.rgb, cal)
        scores.append(panoptic_quality(s.labels, out.labels)["pq"])
        areas = np.bincount(out.labels.ravel())[1:] * 0.25**2
        assert areas.min() >= 10.0  # platelets (3-7 µm²) and specks are not cells
    assert min(scores) >= 0.8, scores


def test_h_maxima_keep_a_sickle_cell_whole() -> None:
    """One long crescent on glass is one cell (plain local maxima along its ridge would cut it)."""
    s = generate_smear(SmearSpec(cells=1, shares=(0, 1, 0), platelets=0, size=(160, 160)), 4)
    seg = RedCellSegmenter()
    out = seg.segment(s.rgb, seg.calibrate(s.rgb, np.ones(s.rgb.shape[:2], dtype=bool)))
    assert int(out.labels.max()) == 1


@pytest.mark.slow
def test_through_the_pipeline_tiled_equals_whole(
    tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    smears = tmp_path / "smears"
    write_smears(smears, 1, seed=11)
    outs = {}
    for tile in ("256", "4096"):
        out = tmp_path / f"out{tile}"
        res = nucscale_cli(
            "run", str(smears / "smear-000.tif"), "--out", str(out), "--model", "redcells",
            "--tile", tile, "--workers", "1", "--dashboard", ":0",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "flagged" not in res.stderr  # nucleus stain rules do not apply to red cells
        outs[tile] = out
    part = "nuclei/slide_id=smear-000/part-0.parquet"
    tables = []
    for tile in ("256", "4096"):  # ids and tile columns name the owning tile: left out
        t = pq.read_table(outs[tile] / part).drop(["nucleus_id", "tile_row", "tile_col"])
        tables.append(t.sort_by([("centroid_y", "ascending"), ("centroid_x", "ascending")]))
    a, b = tables
    assert a.num_rows > 50 and a.equals(b)
    assert set(a.column("type_name").to_pylist()) == {"red cell"}
    assert float(pq.read_schema(outs["256"] / part).metadata[b"nucscale.mpp"]) == 0.25
    la = np.asarray(open_labels(outs["256"], "smear-000")[:]) > 0
    assert np.array_equal(la, np.asarray(open_labels(outs["4096"], "smear-000")[:]) > 0)
    assert segmentation_scores(outs["256"], smears)["pq"].iloc[0] >= 0.8
