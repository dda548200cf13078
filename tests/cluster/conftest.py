"""A real single-node SLURM on 127.0.0.1 (scripts/slurm-local.sh), once per session.

Skipped with the reason where SLURM's daemons are not installed; NUCSCALE_REQUIRE_SLURM=1 (set
by .ci/run, which installs them) turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"

#: The site configuration a SLURM user keeps in jobqueue.yaml; loopback only in the tests.
JOBQUEUE_YAML = """\
jobqueue:
  slurm:
    interface: lo
    cores: 1
    memory: 3GiB
    walltime: "00:20:00"
"""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd started for real; yields the environment that points
    sbatch/squeue (SLURM_CONF) and Dask (DASK_CONFIG: a jobqueue.yaml) at them."""
    missing = [
        d for d in ("munged", "slurmctld", "slurmd")
        if not Path("/usr/sbin", d).exists() and shutil.which(d) is None
    ]  # fmt: skip
    if missing or shutil.which("sbatch") is None:
        reason = f"SLURM is not installed ({', '.join(missing) or 'sbatch'} missing; "
        reason += "bash scripts/slurm-local.sh install)"
        if os.environ.get("NUCSCALE_REQUIRE_SLURM") == "1":
            pytest.fail(reason + "; NUCSCALE_REQUIRE_SLURM=1 forbids skipping")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=60)
        pytest.fail(f"the local SLURM did not start: {started.stderr.strip()}")
    config = folder / "dask"
    config.mkdir()
    (config / "jobqueue.yaml").write_text(JOBQUEUE_YAML)
    env = {
        **os.environ,
        "SLURM_CONF": str(folder / "slurm.conf"),
        "DASK_CONFIG": str(config),
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "200",
    }
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=60)
