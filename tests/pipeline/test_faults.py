"""Real faults on real processes: SIGKILL of the whole run, a worker killed mid-slide.

Both must end with output identical to the uninterrupted reference run (``cmu1_run``, same
settings), and a killed run must leave nothing at the final output paths.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.store import ManifestRow, open_labels, read_manifest

pytestmark = pytest.mark.slow

CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]
SLIDE = "CMU-1-Small-Region"
PART = f"nuclei/slide_id={SLIDE}/part-0.parquet"


def _fragments(out: Path) -> list[Path]:
    """Finished segmentation tiles (a tile's Parquet fragment is its completion marker)."""
    return sorted((out / ".work" / SLIDE).glob("segment-*/r*_c*.parquet"))


def _wait_for_tiles(proc: subprocess.Popen[bytes], out: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(_fragments(out)) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {n} tiles were done")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {n} tiles done after {timeout} s")
        time.sleep(0.1)


def _assert_same_as_reference(out: Path, reference: Path) -> None:
    assert pq.read_table(out / PART).equals(pq.read_table(reference / PART))
    a = open_labels(out, f"{SLIDE}")[:]
    b = open_labels(reference, f"{SLIDE}")[:]
    assert np.array_equal(a, b)


def _row(out: Path) -> ManifestRow:
    """The manifest row of the slide (keyed by id: the stored path may or may not have its
    symlinks resolved, depending on how the shared folder is mounted)."""
    rows = [r for (sid, _), r in read_manifest(out).items() if sid == SLIDE]
    assert len(rows) == 1, rows
    return rows[0]


def _run_args(slide: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", str(slide), "--out", str(out), "--tile", "512", "--dashboard", ":0",
        "--model", "baseline", *extra,
    ]  # fmt: skip


def test_sigkill_of_the_process_tree_then_resume(
    cmu1_svs: Path, cmu1_run: Path, tmp_path: Path, nucscale_cli: CliRunner
) -> None:
    out = tmp_path / "out"
    args = _run_args(cmu1_svs, out, "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nucscale", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: client, scheduler, nannies, workers
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        _wait_for_tiles(proc, out, 6, timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(_fragments(out))
    # nothing at the final paths, and the slide is not marked done
    assert not (out / PART).exists()
    assert not (out / "labels" / f"{SLIDE}.zarr").exists()
    assert all(r.status != "done" for r in read_manifest(out).values())

    res = nucscale_cli(*args)
    assert res.returncode == 0, res.stderr
    row = _row(out)
    assert row.status == "done"
    assert row.tiles is not None and row.tiles_reused is not None
    # only unfinished tiles were segmented again (a tile killed while being written counts
    # as unfinished, so at least what was done before the kill is reused)
    assert done_before <= row.tiles_reused < row.tiles
    print(f"resume: {row.tiles_reused} of {row.tiles} tiles reused, {done_before} done at the kill")
    _assert_same_as_reference(out, cmu1_run)
    assert not list((out / ".work" / SLIDE).glob("segment-*"))  # scratch cleared

    again = nucscale_cli(*args)  # a finished slide is skipped at once
    assert again.returncode == 0, again.stderr
    assert _row(out).finished == row.finished


def test_worker_killed_mid_run(
    dask_cluster: str, cmu1_svs: Path, cmu1_run: Path, tmp_path: Path
) -> None:
    from distributed import Client

    out = tmp_path / "out"
    args = _run_args(cmu1_svs, out, "--scheduler", dask_cluster)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nucscale", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"},
    )
    try:
        _wait_for_tiles(proc, out, 3, timeout=300)
        with Client(dask_cluster, timeout="10s") as c:
            pids = c.run(os.getpid)  # worker address -> worker process id
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)  # its nanny restarts it; its tasks are retried
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    _assert_same_as_reference(out, cmu1_run)


def test_unwritable_output_fails_that_slide_only(
    openslide_fixtures: Path, tmp_path: Path, baseline_cli: CliRunner
) -> None:
    """A slide whose output cannot be written (here: a file where its folder must go, as a
    full disk or a permission error would) fails with the path and reason; the rest is done."""
    small = openslide_fixtures / "small.svs"
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,slide_id\n{small},blocked\n{small},fine\n")
    out = tmp_path / "out"
    (out / "nuclei").mkdir(parents=True)
    (out / "nuclei" / "slide_id=blocked").write_text("in the way\n")
    res = baseline_cli(csv, out, 1)
    assert res.returncode == 1, res.stderr
    rows = {sid: r for (sid, _), r in read_manifest(out).items()}
    assert rows["fine"].status == "done", rows["fine"].error
    assert rows["blocked"].status == "failed"
    error = rows["blocked"].error or ""
    assert "slide_id=blocked" in error and "\n" not in error and "Traceback" not in error
    assert not (out / "labels" / "blocked.zarr").exists()  # nothing half-written in place
    assert not list(out.rglob("*.tmp"))
