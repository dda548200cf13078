"""Pipeline fixtures: CMU-1 processed once per session, a real scheduler + worker processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask_bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable}")
    return found


@contextmanager
def real_dask(tmp_path: Path, workers: list[list[str]]) -> Iterator[str]:
    """`dask scheduler` and one `dask worker` process per entry of ``workers`` (its extra
    arguments, e.g. ``["--resources", "GPU=1"]``) on 127.0.0.1; yields the address."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    dask = _dask_bin("dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", ":0"],
            **quiet,  # type: ignore[call-overload]
        )
    ]  # fmt: skip
    try:
        for i, extra in enumerate(workers):
            procs.append(
                subprocess.Popen(
                    [dask, "worker", addr, "--nthreads", "1", "--name", f"w{i}",
                     "--local-directory", str(tmp_path / f"w{i}"), "--no-dashboard", *extra],
                    **quiet,  # type: ignore[call-overload]
                )
            )  # fmt: skip
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    c.wait_for_workers(len(workers), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def start_dask() -> Callable[[Path, list[list[str]]], AbstractContextManager[str]]:
    """:func:`real_dask`, for tests that choose their workers' arguments."""
    return real_dask


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` + 2 `dask worker` processes on 127.0.0.1; yields the address."""
    with real_dask(tmp_path, [[], []]) as addr:
        yield addr


CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def nucscale_cli() -> CliRunner:
    """Runs ``python -m nucscale ARGS...`` in a subprocess; returns the completed process."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nucscale", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"},
        )

    return run


@pytest.fixture
def baseline_cli(nucscale_cli: CliRunner) -> Callable[[Path, Path, int], Any]:
    """``run(inputs, out, workers)``: ``nucscale run INPUTS --out OUT --workers N --model
    baseline`` in a subprocess, no dashboard port; returns the completed process."""

    def run(inputs: Path, out: Path, workers: int) -> subprocess.CompletedProcess[str]:
        return nucscale_cli(
            "run", str(inputs), "--out", str(out), "--workers", str(workers),
            "--dashboard", ":0", "--model", "baseline",
        )  # fmt: skip

    return run
