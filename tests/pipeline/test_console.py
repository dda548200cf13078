"""What a user sees on the console of `nucscale run`: bad inputs, a busy dashboard port, a rerun."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from nucscale.store import ManifestRow, read_manifest, write_manifest

pytestmark = pytest.mark.slow

BAD = {"empty": "empty.svs", "truncated": "truncated.svs", "notaslide": "notaslide.tif"}


def _bad_cohort(cmu1_svs: Path, folder: Path) -> list[Path]:
    """An empty file, the first half of the real CMU-1 SVS, and a TIFF of CMU-1's bytes as a
    16-plane stack (a TIFF, but no slide)."""
    raw = cmu1_svs.read_bytes()
    folder.mkdir()
    (folder / "empty.svs").write_bytes(b"")
    (folder / "truncated.svs").write_bytes(raw[: len(raw) // 2])
    planes = np.frombuffer(raw[: 16 * 64 * 64], np.uint8).reshape(16, 64, 64)
    tifffile.imwrite(folder / "notaslide.tif", planes)
    return [folder / name for name in BAD.values()]


def test_bad_inputs_are_tried_once_and_reported_in_one_line_each(
    cmu1_svs: Path, tmp_path: Path
) -> None:
    bad = _bad_cohort(cmu1_svs, tmp_path / "in")
    out = tmp_path / "out"
    with socket.socket() as busy:  # the dashboard's port is taken
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [
            sys.executable, "-m", "nucscale", "run", str(cmu1_svs), *map(str, bad),
            "--out", str(out), "--model", "baseline", "--workers", "2", "--dashboard", f":{port}",
        ]  # fmt: skip
        res = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=600,
            env={
                **os.environ,
                "COLUMNS": "200",
            },
        )
    text = res.stdout + res.stderr
    assert res.returncode == 1, text
    assert "1 done, 3 failed" in text
    for noise in ("Traceback", "Compute Failed", "UserWarning", "already in use", "TiffPages"):
        assert noise not in text, (noise, text)
    # Dask's own INFO chatter (cluster start and stop, connections) stays out of the console
    assert not [line for line in text.splitlines() if line.startswith("info:")], text
    dashboard = [line for line in text.splitlines() if line.startswith("dashboard:")]
    assert len(dashboard) == 1 and f":{port}/" not in dashboard[0], dashboard
    for name in BAD.values():
        lines = [line for line in text.splitlines() if name in line]
        # once while running (the error log) and once in the final table, never cut or wrapped
        assert len(lines) == 2 and all(line.count(name) == 1 for line in lines), (name, lines)
    rows = {sid: r for (sid, _), r in read_manifest(out).items()}
    for sid, name in BAD.items():  # the manifest keeps the full path
        assert rows[sid].status == "failed"
        assert (rows[sid].error or "").startswith(f"{tmp_path / 'in' / name}: ")
    assert "empty file" in (rows["empty"].error or "")
    assert rows["CMU-1-Small-Region"].status == "done"


def test_rerun_names_the_slides_it_skips_and_survives_a_deleted_table(
    cmu1_svs: Path, cmu1_run: Path, tmp_path: Path
) -> None:
    """A rerun says which slides were done already; an earlier done slide whose table was
    deleted since shows as missing in the cohort table instead of ending the run in a
    traceback."""
    out = tmp_path / "out"
    shutil.copytree(cmu1_run, out)
    earlier = ManifestRow("earlier", "/gone/earlier.svs", "done", nuclei=5, tissue_mm2=1.0)
    write_manifest(out, [earlier])  # done in some earlier run; its table deleted since
    args = [
        sys.executable, "-m", "nucscale", "run", str(cmu1_svs), "--out", str(out),
        "--model", "baseline", "--tile", "512", "--workers", "1", "--dashboard", ":0",
    ]  # fmt: skip
    res = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    text = res.stderr
    assert "skipped 1 slide(s) already done with these settings: CMU-1-Small-Region" in text
    assert "done earlier" in text
    assert "1 done (1 of them in an earlier run), 0 failed" in text
    assert "Traceback" not in text
    table = {r["slide_id"]: r for r in pq.read_table(out / "slides.parquet").to_pylist()}
    assert table["CMU-1-Small-Region"]["status"] == "done"
    assert table["earlier"]["status"] == "missing"
    assert "nucleus table missing" in table["earlier"]["error"]
