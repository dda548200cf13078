"""``nucscale run --cluster slurm`` on a real single-node SLURM: workers are SLURM jobs, the output
equals a local run's, a cancelled worker job does not lose the run, refusals are one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.store import open_labels, read_manifest

pytestmark = pytest.mark.slow

PART = "nuclei/slide_id=CMU-1-Small-Region/part-0.parquet"
SLIDE = "CMU-1-Small-Region"


def _nucscale(*args: str) -> list[str]:
    return [sys.executable, "-m", "nucscale", *args]


def _run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _nucscale(*args), capture_output=True, text=True, timeout=timeout, env=env
    )


def _squeue(env: dict[str, str]) -> list[tuple[str, str]]:
    """(job id, state) of every job in the queue."""
    res = subprocess.run(
        ["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, env=env, check=True
    )
    return [tuple(line.split()) for line in res.stdout.splitlines()]  # type: ignore[misc]


def _wait_for_an_empty_queue(env: dict[str, str], timeout: float = 60) -> None:
    """Jobs of an earlier test (cancelled when its run ended) may still be finishing."""
    deadline = time.monotonic() + timeout
    while _squeue(env) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _squeue(env) == [], "jobs of an earlier test did not end"


def _same_output(out: Path, reference: Path) -> None:
    assert pq.read_table(out / PART).equals(pq.read_table(reference / PART))
    assert np.array_equal(open_labels(out, SLIDE)[:], open_labels(reference, SLIDE)[:])


def test_workers_are_slurm_jobs_and_the_output_equals_a_local_run(
    slurm: dict[str, str], cmu1_svs: Path, cmu1_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "slurm"
    _wait_for_an_empty_queue(slurm)
    res = _run(
        slurm, "run", str(cmu1_svs), "--out", str(out), "--cluster", "slurm",
        "--max-jobs", "2", "--dashboard", ":0", "--model", "baseline", "--tile", "512",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "1 done, 0 failed" in res.stderr
    assert f"workers: slurm jobs, 1 to 2, logs in {out / 'logs' / 'workers'}" in res.stderr
    _same_output(out, cmu1_run)
    # the workers ran as SLURM jobs: each job's stdout/stderr, named by its job id, in OUT
    logs = sorted((out / "logs" / "workers").glob("dask-worker-*.err"))
    assert logs, "no worker job logs"
    text = "\n".join(p.read_text() for p in logs)
    assert "Registered to:" in text and "127.0.0.1" in text
    assert _squeue(slurm) == []  # the jobs were cancelled when the run ended


def test_a_cancelled_worker_job_does_not_lose_the_run(
    slurm: dict[str, str], cmu1_svs: Path, tmp_path: Path
) -> None:
    """Two jobs; one is cancelled with scancel while tiles are computed: its tasks go to the
    other worker (and to the job adaptive scaling submits again) and the run completes with
    the same output as a local run."""
    args = [str(cmu1_svs), "--dashboard", ":0", "--model", "baseline", "--tile", "256"]
    local = tmp_path / "local"
    ref = _run(slurm, "run", *args, "--out", str(local), "--workers", "2")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "slurm"
    _wait_for_an_empty_queue(slurm)
    proc = subprocess.Popen(
        _nucscale("run", *args, "--out", str(out), "--cluster", "slurm",
                  "--min-jobs", "2", "--max-jobs", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=slurm,
    )  # fmt: skip
    try:
        cancelled = None
        deadline = time.monotonic() + 180
        while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
            running = [j for j, state in _squeue(slurm) if state == "RUNNING"]
            # both workers have joined once both jobs' logs say so; then cut one away mid-run
            logs = list((out / "logs" / "workers").glob("dask-worker-*.err"))
            joined = [p for p in logs if "Registered to:" in p.read_text()]
            if len(running) == 2 and len(joined) == 2:
                cancelled = running[-1]
                still_running = proc.poll() is None
                subprocess.run(["scancel", cancelled], env=slurm, check=True)
            time.sleep(0.2)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cancelled is not None, f"the two worker jobs never ran together: {stderr}"
    assert still_running, "the run had already finished when the job was cancelled"
    assert proc.returncode == 0, stderr
    assert "1 done, 0 failed" in stderr
    err = (out / "logs" / "workers" / f"dask-worker-{cancelled}.err").read_text()
    assert "CANCELLED" in err
    _same_output(out, local)
    assert [r.status for r in read_manifest(out).values()] == ["done"]


def test_a_refused_job_is_one_line_naming_the_reason(
    slurm: dict[str, str], cmu1_svs: Path, tmp_path: Path
) -> None:
    res = _run(
        slurm, "run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--cluster", "slurm",
        "--queue", "nosuchqueue", "--dashboard", ":0", "--model", "baseline", timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert "a worker job was refused: sbatch: error: invalid partition specified: nosuchqueue" in (
        res.stderr
    )
    assert "Traceback" not in res.stderr and "RuntimeError" not in res.stderr


def test_no_sbatch_on_path_is_a_clear_error(
    slurm: dict[str, str], cmu1_svs: Path, tmp_path: Path
) -> None:
    env = {**slurm, "PATH": os.path.dirname(sys.executable)}
    res = _run(
        env, "run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--cluster", "slurm",
        "--dashboard", ":0", "--model", "baseline", timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert "error: --cluster slurm: the job submission command 'sbatch' is not on PATH" in (
        res.stderr
    )
    assert not (tmp_path / "o" / "nuclei").exists()


def test_the_batch_script_runs_a_cohort_inside_one_allocation(
    slurm: dict[str, str], cmu1_svs: Path, cmu1_run: Path, tmp_path: Path
) -> None:
    """deploy/slurm/nucscale-cluster.sbatch, submitted with sbatch: scheduler and two workers as
    job steps, the run against them; same output as the local run, the run's status reported."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "nucscale-cluster.sbatch"
    out = tmp_path / "batch"
    env = {
        **slurm,
        "NUCSCALE_VENV": sys.prefix,
        "NUCSCALE_PORT": str(port),
        "NUCSCALE_DASHBOARD": ":0",
        "NUCSCALE_WORKER_MEMORY": "2GiB",
    }
    job_log = tmp_path / "job.log"
    _wait_for_an_empty_queue(slurm)
    # --nodes=1: without it SLURM fixes the node count at submission from the CPUs free then
    # (two, while an earlier test's jobs still end), and a one-node partition never runs it
    res = subprocess.run(
        ["sbatch", "--wait", "--nodes=1", "--ntasks=2", "--cpus-per-task=1", "--mem=4G",
         "-o", str(job_log),
         str(script), str(cmu1_svs), str(out), "--model", "baseline", "--tile", "512"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    log = job_log.read_text()
    assert res.returncode == 0, log
    assert "nucscale run exited with 0" in log and "1 done, 0 failed" in log
    _same_output(out, cmu1_run)
    assert not list(out.glob(".scheduler-*.json"))  # the scheduler file is removed at the end
