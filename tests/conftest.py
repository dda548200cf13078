"""Session fixtures: the real third-party files in ../shared/data, CMU-1 processed once, CUDA
detection, a real Dask scheduler with worker processes, and the CLI in a subprocess.

Tests that need ../shared/data skip with a reason when it is absent, and fail instead when
NUCSCALE_REQUIRE_SHARED=1 (set by .ci/run), so CI can never pass by skipping them.
"""

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

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NUCSCALE_SHARED_DATA", REPO.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"shared test data not found: {path} (see ../shared/data/README.md)"
    if os.environ.get("NUCSCALE_REQUIRE_SHARED") == "1":
        pytest.fail(msg + "; NUCSCALE_REQUIRE_SHARED=1 forbids skipping")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def cmu1_svs(shared_data: Path) -> Path:
    """The real Aperio CMU-1-Small-Region.svs (2220x2967, 0.499 µm/px)."""
    return _require(shared_data / "slides" / "CMU-1-Small-Region.svs")


@pytest.fixture(scope="session")
def cmu1_dicom(shared_data: Path) -> Path:
    """The same pixels as a 12-level DICOM WSI pyramid (folder)."""
    return _require(shared_data / "slides" / "cmu-1-small-region-dicom")


@pytest.fixture(scope="session")
def openslide_fixtures(shared_data: Path) -> Path:
    return _require(shared_data / "slides" / "openslide-fixtures")


@pytest.fixture(scope="session")
def highdicom_dir(shared_data: Path) -> Path:
    return _require(shared_data / "dicom" / "highdicom")


@pytest.fixture(scope="session")
def bioimageio_unet(shared_data: Path) -> Path:
    """The bioimage.io package "UNet 2D Nuclei Broad" (MIT): YAML, TorchScript and ONNX weights,
    test tensors; its README, covers and sample PNGs are absent."""
    return _require(shared_data / "models" / "unet2d-nuclei-broad")


@pytest.fixture(scope="session")
def dsb2018(shared_data: Path) -> Path:
    """49 DSB 2018 images with instance-label ground truth (CC0)."""
    return _require(shared_data / "nuclei" / "dsb2018-dev")


@pytest.fixture(scope="session")
def cmu1_run(cmu1_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CMU-1 processed once per session (the weights-free baseline, 512 px tiles: 30 tiles)
    with a 2-process LocalCluster; shared by the pipeline and classify tests (a test that
    writes into a run copies it first)."""
    from nucscale.cluster import get_client
    from nucscale.config import Settings
    from nucscale.pipeline import resolve_inputs, run_cohort

    out = tmp_path_factory.mktemp("cmu1")
    slides, rejected = resolve_inputs([str(cmu1_svs)])
    settings = Settings(segmenter="baseline", tile=512)
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings, out)
    assert [(r.slide_id, r.status) for r in rows] == [("CMU-1-Small-Region", "done")], rows
    return out


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


@pytest.fixture(scope="session")
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smear_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four synthetic blood smears (generated, nucscale.smear) segmented once per session with
    ``--model redcells`` on a 2-process LocalCluster; (smear folder, run output)."""
    from nucscale.cluster import get_client
    from nucscale.config import Settings
    from nucscale.pipeline import resolve_inputs, run_cohort
    from nucscale.smear import write_smears

    folder = tmp_path_factory.mktemp("smears")
    write_smears(folder, 4)
    out = tmp_path_factory.mktemp("smear-run")
    slides, rejected = resolve_inputs(sorted(str(p) for p in folder.glob("smear-*.tif")))
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, Settings(segmenter="redcells"), out)
    assert [r.status for r in rows] == ["done"] * 4, rows
    return folder, out
