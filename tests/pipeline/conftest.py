"""Pipeline fixtures: crops of CMU-1, the baseline CLI (CMU-1 processed once per session
(``cmu1_run``), the real scheduler and worker processes and the CLI runner are in the root
conftest)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nucscale.io import open_slide, write_flat_tiff

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
