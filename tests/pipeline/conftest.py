"""Pipeline fixtures: CMU-1 processed once per session, crops of it, the baseline CLI (the real
scheduler and worker processes and the CLI runner are in the root conftest)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.io import open_slide, write_flat_tiff
from nucscale.pipeline import resolve_inputs, run_cohort

#: Settings of the reference CMU-1 run: the weights-free baseline, 512 px tiles.
SETTINGS = Settings(segmenter="baseline", tile=512)


@pytest.fixture(scope="session")
def cmu1_run(cmu1_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CMU-1 processed once with a 2-process LocalCluster, 512 px tiles (30 tiles)."""
    out = tmp_path_factory.mktemp("cmu1")
    slides, rejected = resolve_inputs([str(cmu1_svs)])
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, SETTINGS, out)
    assert [(r.slide_id, r.status) for r in rows] == [("CMU-1-Small-Region", "done")], rows
    return out


CropWriter = Callable[[Path, int, int, int, int], Path]


@pytest.fixture(scope="session")
def cmu1_crop_tiff(cmu1_svs: Path) -> CropWriter:
    """``write(dest, x, y, w, h)``: level-0 pixels of the real CMU-1 slide as a flat TIFF at
    the slide's pixel size; returns ``dest``."""

    def write(dest: Path, x: int, y: int, w: int, h: int) -> Path:
        with open_slide(cmu1_svs) as s:
            rgb = s.read_region(0, x, y, w, h)
        write_flat_tiff(rgb, dest, mpp=0.499)
        return dest

    return write


@pytest.fixture
def baseline_cli(nucscale_cli: Callable[..., Any]) -> Callable[[Path, Path, int], Any]:
    """``run(inputs, out, workers)``: ``nucscale run INPUTS --out OUT --workers N --model
    baseline`` in a subprocess, no dashboard port; returns the completed process."""

    def run(inputs: Path, out: Path, workers: int) -> subprocess.CompletedProcess[str]:
        return nucscale_cli(
            "run", str(inputs), "--out", str(out), "--workers", str(workers),
            "--dashboard", ":0", "--model", "baseline",
        )  # fmt: skip

    return run
