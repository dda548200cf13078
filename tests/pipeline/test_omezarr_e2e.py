"""``nucscale run`` on an OME-Zarr copy of CMU-1 gives the SVS's nuclei, and its saved image
reads back.

The copy holds the SVS's level-0 pixels (read through nucscale) as an NGFF 0.5 pyramid of
4 levels at 0.499 µm/px; the run uses real `dask` worker processes through the CLI.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.io import open_slide
from nucscale.io._synthetic_omezarr import write_rgb_omezarr
from nucscale.store import read_manifest, read_metadata
from nucscale.store._omezarr import image_path, open_labels

pytestmark = pytest.mark.slow

SLIDE_ID = "CMU-1-Small-Region"
CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def test_omezarr_copy_gives_the_svs_nuclei(
    cmu1_svs: Path, cmu1_run: Path, tmp_path: Path, nucscale_cli: CliRunner
) -> None:
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 0, 0, *s.dimensions)
    store = write_rgb_omezarr(rgb, tmp_path / "cmu1.ome.zarr", mpp=0.499, levels=4, chunk=512)
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,slide_id\n{store},{SLIDE_ID}\n")  # the SVS run's id: same nucleus ids
    out = tmp_path / "out"
    res = nucscale_cli(
        "run", str(csv), "--out", str(out), "--workers", "2", "--dashboard", ":0",
        "--tile", "512", "--model", "baseline", "--save-image",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = {sid: r for (sid, _), r in read_manifest(out).items()}
    assert rows[SLIDE_ID].status == "done", rows[SLIDE_ID].error
    part = Path("nuclei") / f"slide_id={SLIDE_ID}" / "part-0.parquet"
    ours, svs = pq.read_table(out / part), pq.read_table(cmu1_run / part)
    assert ours.num_rows == svs.num_rows > 1000
    assert ours.equals(svs)  # every column: ids, centroids, bboxes, features, outlines
    assert np.array_equal(open_labels(out, SLIDE_ID)[:], open_labels(cmu1_run, SLIDE_ID)[:])
    meta = read_metadata(out / part)
    assert json.loads(meta["read.channel_rule"]) == "omero colours FF0000, 00FF00, 0000FF"
    assert json.loads(meta["read.ngff_version"]) == "0.5"
    # the analysed image nucscale wrote (--save-image) is itself an input nucscale reads
    with open_slide(image_path(out, SLIDE_ID)) as saved:
        assert saved.backend == "ome-zarr"
        assert saved.mpp == pytest.approx(0.499)
        assert saved.dimensions == (2220, 2967)
        pixels = saved.read_region(0, 0, 0, 2220, 2967)
    differ = (pixels != rgb).any(axis=-1)
    assert (pixels[differ] == 255).all()  # only tiles without tissue are left white
    assert differ.mean() < 0.5
