"""One run per output folder: a second run fails at once naming the holder; a dead holder's
lock is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nucscale.cli._app import app
from nucscale.errors import OutputError
from nucscale.store._lock import out_lock

HOLD = """
import sys, time
from pathlib import Path
from nucscale.store._lock import out_lock
with out_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_fails_at_once_and_a_dead_holders_lock_is_taken_over(
    cmu1_svs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        t0 = time.perf_counter()
        args = ["run", str(cmu1_svs), "--out", str(out), "--workers", "1", "--dashboard", ":0"]
        res = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
        elapsed = time.perf_counter() - t0
        assert res.exit_code == 2, res.output
        assert "another nucscale run is using this folder" in res.output
        assert f"pid {holder.pid}" in res.output and socket.gethostname() in res.output
        assert "Traceback" not in res.output and "dashboard" not in res.output  # no cluster
        assert elapsed < 10
        assert not (out / "manifest.parquet").exists()
        with pytest.raises(OutputError, match=f"pid {holder.pid}"), out_lock(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    with out_lock(out):  # the dead run's lock file is still there: taken over
        assert f"pid {os.getpid()}" in (out / ".nucscale.lock").read_text()
        with out_lock(out):  # re-entered by the same process (the CLI, then run_cohort)
            pass
