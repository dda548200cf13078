"""``nucscale run`` on fluorescence files that used to be read wrong without a word.

Built from a real DSB 2018 fluorescence field (its nuclei) and the real CMU-1 region (whole
tissue signal for the other channels): a 16-bit copy of a dim field, and a 3-channel OME-TIFF
whose nuclear channel is not the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from nucscale.cli._app import app
from nucscale.io import open_slide
from nucscale.store import read_manifest, read_metadata

pytestmark = pytest.mark.slow

FLUO_ID = "519dc0d672d1"


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(
        app, ["run", *args, "--workers", "1"], terminal_width=200, env={"COLUMNS": "250"}
    )
    assert res.exit_code == 0, res.output
    return res.output


def _nuclei(out: Path, slide_id: str) -> pq.Table:
    part = out / "nuclei" / f"slide_id={slide_id}" / "part-0.parquet"
    return pq.read_table(part, columns=["nucleus_id", "area", "centroid_x", "centroid_y"])


@pytest.fixture(scope="module")
def nuclei8(dsb2018: Path) -> np.ndarray:
    return np.asarray(Image.open(dsb2018 / f"{FLUO_ID}_image.png").convert("L"))


def test_sixteen_bit_copy_gives_the_same_nuclei(nuclei8: np.ndarray, tmp_path: Path) -> None:
    assert nuclei8.max() < 255  # a dim field: 16-bit scaled by 65535 it read as black
    tifffile.imwrite(tmp_path / "f8.tif", nuclei8, photometric="minisblack")
    tifffile.imwrite(tmp_path / "f16.tif", nuclei8.astype(np.uint16), photometric="minisblack")
    out = tmp_path / "out"
    _run([str(tmp_path / "f8.tif"), str(tmp_path / "f16.tif"), "--mpp", "0.5", "--out", str(out)])
    a, b = _nuclei(out, "f8"), _nuclei(out, "f16")
    assert a.num_rows > 5
    assert a.equals(b)
    meta = read_metadata(out / "nuclei" / "slide_id=f16" / "part-0.parquet")
    assert json.loads(meta["read.intensity_range"]) == [0.0, 255.0]


def _ome(path: Path, stack: np.ndarray, names: list[str]) -> Path:
    meta = {"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "Channel": {"Name": names}}
    tifffile.imwrite(path, stack, ome=True, metadata=meta)
    return path


def test_nuclear_channel_is_found_by_name_or_refused(
    nuclei8: np.ndarray, cmu1_svs: Path, tmp_path: Path
) -> None:
    h, w = nuclei8.shape
    with open_slide(cmu1_svs) as slide:
        tissue = slide.read_region(0, 400, 600, w, h)
    stack = np.stack([255 - tissue[:, :, 1], 255 - tissue[:, :, 0], nuclei8])
    named = _ome(tmp_path / "named.ome.tif", stack, ["Actin", "WGA", "Hoechst 33342"])
    unnamed = _ome(tmp_path / "unnamed.ome.tif", stack, ["c1", "c2", "c3"])
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, nuclei8, photometric="minisblack")
    out = tmp_path / "out"
    CliRunner().invoke(
        app,
        ["run", str(named), str(unnamed), str(single), "--mpp", "0.5", "--out", str(out),
         "--workers", "1"],
        terminal_width=200,
    )  # fmt: skip
    rows = {sid: r for (sid, _), r in read_manifest(out).items()}
    assert rows["named.ome"].status == "done" and rows["single"].status == "done"
    assert _nuclei(out, "named.ome").equals(_nuclei(out, "single"))  # the Hoechst channel
    meta_named = read_metadata(out / "nuclei" / "slide_id=named.ome" / "part-0.parquet")
    assert json.loads(meta_named["read.channel"]) == "2: 'Hoechst 33342'"
    assert rows["unnamed.ome"].status == "failed"
    assert "0: 'c1'; 1: 'c2'; 2: 'c3'" in (rows["unnamed.ome"].error or "")
    assert "--channel" in (rows["unnamed.ome"].error or "")
    # the user's choice, through the CSV manifest's channel column
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,slide_id,channel\n{unnamed},unnamed,c3\n")
    out2 = tmp_path / "out2"
    _run([str(csv), "--mpp", "0.5", "--out", str(out2)])
    assert _nuclei(out2, "unnamed").equals(_nuclei(out, "single"))


def test_refused_slides_leave_one_line_and_no_worker_traceback(
    nuclei8: np.ndarray, tmp_path: Path
) -> None:
    """As a user runs it (a subprocess, a local cluster): Dask's worker logged every failed
    task with its traceback, three times with the retries; now only the one-line reasons."""
    stack = np.stack([nuclei8 // 2, nuclei8 // 3, nuclei8])
    unnamed = _ome(tmp_path / "abc.ome.tif", stack, ["a", "b", "c"])
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(unnamed.read_bytes()[:5000])
    cmd = [sys.executable, "-m", "nucscale", "run", str(unnamed), str(truncated), "--mpp", "0.5"]
    cmd += ["--out", str(tmp_path / "out"), "--workers", "1", "--dashboard", ":0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    assert "0 done, 2 failed" in text, text
    assert "Traceback" not in text and "Compute Failed" not in text, text
    assert "pass --channel NAME|INDEX" in text


def test_done_but_suspicious_is_said_in_the_printed_table(cmu1_svs: Path, tmp_path: Path) -> None:
    """Real CMU-1 tissue blurred until no nucleus is left: done, but flagged where users look."""
    from scipy import ndimage as ndi

    with open_slide(cmu1_svs) as slide:
        tissue = slide.read_region(0, 700, 2000, 1024, 1024).astype(np.float32)
    blurred = np.clip(ndi.gaussian_filter(tissue, (12, 12, 0)), 0, 255).astype(np.uint8)
    Image.fromarray(blurred).save(tmp_path / "blurred.png")
    out = tmp_path / "out"
    text = _run([str(tmp_path / "blurred.png"), "--mpp", "0.5", "--out", str(out)])
    assert "done, suspicious" in text and "no nuclei in" in text
    assert "1 done, 0 failed" in text and "1 done but flagged by QC" in text
    (row,) = read_manifest(out).values()
    assert row.status == "done" and "no nuclei in" in (row.qc_flags or "")
    slides = pq.read_table(out / "slides.parquet").to_pylist()
    assert slides[0]["qc_flags"] == ["no nuclei in 0.244 mm² of tissue"]
