"""The files in deploy/ start workers with the environment nucscale gives the workers it starts
itself (nucscale/cluster/_malloc.py, _housekeeping.py): variables a process reads once, at its
start, which no plugin can set later."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nucscale.cluster._forks import ZARR_THREADS
from nucscale.cluster._housekeeping import SETTINGS, env_name
from nucscale.cluster._malloc import ARENA_MAX, ARROW_POOL_ENV, worker_environ

ROOT = Path(__file__).resolve().parents[2] / "deploy"

#: What every worker's environment holds (a shell default ``${X:-v}`` counts as ``v``).
SPAWNED = {"MALLOC_ARENA_MAX": str(ARENA_MAX), ARROW_POOL_ENV: "system"}
#: ... and one thread in zarr's pool, as local workers of one thread get (``thread_env(1)``)
THREADS = {ZARR_THREADS: "1"}
WANTED = {**SPAWNED, **THREADS, **{env_name(k): str(v) for k, v in SETTINGS.items()}}


def _shell_value(text: str, name: str) -> str | None:
    for line in text.splitlines():
        line = line.strip().removeprefix("export ")
        for word in line.split():
            if word.startswith(f"{name}="):
                value = word.split("=", 1)[1].rstrip("\\").strip()
                default = f"${{{name}:-"
                return value[len(default) : -1] if value.startswith(default) else value
    return None


def test_the_local_nanny_spawns_workers_with_the_same_environment() -> None:
    spawn = {k.rsplit(".", 1)[1]: str(v) for k, v in worker_environ().items()}
    assert spawn == SPAWNED


@pytest.mark.parametrize("name", sorted(WANTED))
def test_the_image_and_the_sbatch_script_set_it(name: str) -> None:
    for path in (ROOT / "Dockerfile", ROOT / "slurm" / "nucscale-cluster.sbatch"):
        assert _shell_value(path.read_text(), name) == WANTED[name], (path.name, name)


def test_the_operator_s_worker_pods_set_it() -> None:
    spec = yaml.safe_load((ROOT / "kubernetes" / "operator" / "daskcluster.yaml").read_text())
    (container,) = spec["spec"]["worker"]["spec"]["containers"]
    env = {e["name"]: str(e["value"]) for e in container["env"]}
    assert {k: env.get(k) for k in WANTED} == WANTED


def test_a_missing_variable_is_seen() -> None:
    assert _shell_value("export OMP_NUM_THREADS=1\n", "MALLOC_ARENA_MAX") is None
    assert _shell_value("export A=${A:-system}\n", "A") == "system"
