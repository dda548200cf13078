"""The SLURM batch script's control flow, with stand-ins for srun, scontrol, dask and nucscale
on PATH (a real single-node SLURM exercises it in the cluster tests)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "nucscale-cluster.sbatch"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, run_status: int) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "srun.log"
    # srun logs its arguments; the scheduler step writes the scheduler file, then stays up
    _stub(bin_, "srun", f'echo "$@" >> {log}\n'
          'case "$*" in *"dask scheduler"*) f=${@: -1}; echo {{}} > "$f"; exec sleep 30;; '
          '*) exec sleep 30;; esac\n')  # fmt: skip
    _stub(bin_, "scontrol", "echo node1\n")
    # the run waits until both steps have started (logged), as a real run waits for its workers
    _stub(bin_, "nucscale", f'for _ in $(seq 200); do [ "$(wc -l < {log})" -ge 2 ] && break; '
          f'sleep 0.05; done\nexit {run_status}\n')  # fmt: skip
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_}:{os.environ['PATH']}",
        "NUCSCALE_VENV": str(tmp_path / "venv"),
        "SLURM_JOB_NODELIST": "node1",
        "SLURM_JOB_ID": "7",
        "SLURM_NTASKS": "2",
    }
    out = tmp_path / "out"
    res = subprocess.run(
        ["bash", str(SCRIPT), "cohort.csv", str(out)], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    return res, log.read_text()


def test_steps_overlap_and_the_run_status_is_reported(tmp_path: Path) -> None:
    res, srun_args = _run(tmp_path, 0)
    assert res.returncode == 0, res.stderr
    steps = srun_args.strip().splitlines()
    assert len(steps) == 2 and all(s.startswith("--overlap") for s in steps), steps
    assert "nucscale run exited with 0" in res.stderr


def test_a_failed_run_exits_with_its_status_not_silently(tmp_path: Path) -> None:
    res, _ = _run(tmp_path, 1)
    assert res.returncode == 1
    assert "nucscale run exited with 1" in res.stderr  # set -e no longer skips the report
