"""Local workers forked from the command's fork server (nucscale/cluster/_forks.py).

The fork server belongs to its process for that process's life, so what it does is checked in a
fresh interpreter (:data:`_PROBE`), which prints what its workers report as JSON."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from nucscale.cli import _app, app
from nucscale.cluster import _forks
from nucscale.contracts import WORKER_MODULES

#: Starts a fork server for one-thread workers that imports tifffile and the pipeline's tasks
#: (which import ``nucscale.cluster`` themselves), and two modules that fail:
#: one raises at import, one does not exist), then a 2-worker local cluster (forked) and a
#: 2-thread one (spawned: the server's threads do not match).
_PROBE = r"""
import json, os, sys

def probe(dask_worker):
    import psutil, torch, zarr
    import pyarrow as pa
    parent = " ".join(psutil.Process().parent().cmdline())
    names = ("MALLOC_ARENA_MAX", "ARROW_DEFAULT_MEMORY_POOL", "OMP_NUM_THREADS", "PYTHONHASHSEED")
    # the environment the process was started with (a forked one: its server's), which is
    # what glibc, OpenMP and Arrow read; os.environ also holds what the nanny set later
    with open("/proc/self/environ", "rb") as f:
        start = dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return {
        "forked": "multiprocessing.forkserver" in parent,
        "tifffile_at_start": "tifffile" in sys.modules,
        "pipeline_at_start": "nucscale.pipeline._tasks" in sys.modules,
        "env": {n: start.get(n) for n in names},
        "torch_threads": torch.get_num_threads(),
        "arrow_pool": pa.default_memory_pool().backend_name,
        "profiling": "profile" in dask_worker.periodic_callbacks,
        "tick": dask_worker._tick_interval,
        "zarr_threads": zarr.config.get("threading.max_workers"),
    }

if __name__ == "__main__":
    from nucscale.cluster import get_client
    from nucscale.cluster._forks import fork_config, start_fork_server

    out = {"before": fork_config(1)}
    modules = ["broken_at_import", "nucscale_no_such_module", "tifffile",
               "nucscale.pipeline._tasks"]
    out["started"] = start_fork_server(modules, threads=1)
    out["again"] = start_fork_server(modules, threads=1)
    out["after"] = fork_config(1)
    out["parent_env"] = os.environ.get("MALLOC_ARENA_MAX")
    with get_client(workers=2, dashboard_address=None) as client:
        out["one_thread"] = list(client.run(probe).values())
        out["result"] = client.submit(sum, [1, 2, 3]).result()
    with get_client(workers=1, threads=2, dashboard_address=None) as client:
        out["two_threads"] = list(client.run(probe).values())
    from multiprocessing import forkserver
    from nucscale.cluster._forks import stop_fork_server

    pid = forkserver._forkserver._forkserver_pid
    out["server_alive"] = os.path.exists(f"/proc/{pid}")
    stop_fork_server()
    out["server_gone"] = not os.path.exists(f"/proc/{pid}")
    out["after_stop"] = fork_config(1)
    print(json.dumps(out))
"""

_CLEAN = (
    "MALLOC_ARENA_MAX",
    "ARROW_DEFAULT_MEMORY_POOL",
    "OMP_NUM_THREADS",
    "PYTHONHASHSEED",
    _forks.ZARR_THREADS,
)


def test_local_workers_fork_from_the_server_with_a_spawned_worker_s_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Forked workers start with the server's modules (one that fails to import is skipped,
    without a traceback) and the environment a spawned worker gets (malloc arenas, Arrow's
    pool, one kernel thread, Dask's hash seed) and run tasks; a cluster whose threads differ
    from the server's spawns; the command's own environment is left as it was."""
    for name in _CLEAN:
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    (tmp_path / "broken_at_import.py").write_text("raise RuntimeError('broken at import')\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "broken at import" not in res.stderr, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["before"] == {} and out["started"] is True and out["again"] is False
    assert out["after"] == {"distributed.worker.multiprocessing-method": "forkserver"}
    assert out["parent_env"] is None
    # stopped with the command: at once, reaped, and later clusters spawn
    assert out["server_alive"] and out["server_gone"] and out["after_stop"] == {}
    assert out["result"] == 6
    env = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system",
           "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "6640"}  # fmt: skip
    assert len(out["one_thread"]) == 2
    for worker in out["one_thread"]:
        assert worker == {"forked": True, "tifffile_at_start": True,
                          "pipeline_at_start": True, "env": env,
                          "torch_threads": 1, "arrow_pool": "system", "profiling": False,
                          "tick": 0.1, "zarr_threads": 1}  # fmt: skip
    (spawned,) = out["two_threads"]
    assert spawned["forked"] is False and spawned["tifffile_at_start"] is False
    assert spawned["pipeline_at_start"] is False
    # spawned: Dask's one thread at the start, the nanny's two set before torch loads
    assert spawned["env"] == env and spawned["torch_threads"] == 2
    assert spawned["zarr_threads"] == 2  # zarr's pool as many as the kernels


def test_the_server_s_preload_imports_every_module_a_worker_needs() -> None:
    """What the fork server runs, in a fresh interpreter: every module of
    :data:`WORKER_MODULES` loads (the pipeline's tasks, which import ``nucscale.cluster``,
    failed on a circular import when the preload ran inside that package's ``__init__``; each
    worker then imported them in its first task, 0.6 s)."""
    code = ("import sys, nucscale.cluster._fork_preload\n"
            "from nucscale.contracts import WORKER_MODULES\n"
            "print([m for m in WORKER_MODULES if m not in sys.modules])")  # fmt: skip
    env = {**os.environ, _forks.IMPORTS_ENV: ",".join(WORKER_MODULES)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_starting_the_server_does_not_wait_for_the_cluster_client() -> None:
    """``nucscale.cluster`` loads its names on first use: importing :mod:`_forks` (the
    command's first step) leaves the cluster client and the job queues unloaded, and the
    package's names still resolve (an unknown one raises AttributeError)."""
    code = ("import sys, nucscale.cluster._forks\n"
            "print([m for m in ('nucscale.cluster._client', 'nucscale.cluster._jobqueue')"
            " if m in sys.modules])\n"
            "import nucscale.cluster as c\n"
            "from nucscale.cluster._client import get_client\n"
            "from nucscale.cluster._jobqueue import JobOptions\n"
            "print(c.get_client is get_client, c.JobOptions is JobOptions,"
            " sorted(c.__all__) == sorted(c._HOME))\n"
            "print(hasattr(c, 'no_such_name'))")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == ["[]", "True True True", "False"]


def test_the_start_environment_is_what_the_nanny_would_spawn_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dask's pre-spawn variables with nucscale's, the user's values first, the threads."""
    for name in _CLEAN:
        monkeypatch.delenv(name, raising=False)
    env = _forks.worker_start_env(3)
    assert env["MALLOC_ARENA_MAX"] == "2" and env["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "65536" and env["PYTHONHASHSEED"] == "6640"
    assert {env[n] for n in _forks.THREAD_VARIABLES} == {"3"} and env[_forks.ZARR_THREADS] == "3"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("PYTHONHASHSEED", "11")  # Dask's nanny gives its own seed all the same
    monkeypatch.setenv(_forks.ZARR_THREADS, "8")  # e.g. for a network filesystem's latency
    env = _forks.worker_start_env(1)
    assert env["MALLOC_ARENA_MAX"] == "4" and env["PYTHONHASHSEED"] == "6640"
    assert env["OMP_NUM_THREADS"] == "1" and env[_forks.ZARR_THREADS] == "8"


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], int]]:
    calls: list[tuple[tuple[str, ...], int]] = []

    def record(modules: Any, threads: int = 1) -> bool:
        calls.append((tuple(modules), threads))
        return True

    monkeypatch.setattr(_forks, "start_fork_server", record)
    return calls


@pytest.mark.parametrize(
    ("command", "extra", "started"),
    [
        (True, [], [(WORKER_MODULES, 1)]),
        (True, ["--threads", "2"], [(WORKER_MODULES, 2)]),
        (True, ["--gpu"], []),
        (False, [], []),
    ],
)
def test_only_the_command_starts_the_server_and_only_for_local_cpu_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, command: bool, extra: list[str],
    started: list[Any],
) -> None:  # fmt: skip
    """The server starts after the quick checks, for a local cluster of CPU workers, in the
    command's own process: not for the --gpu layout, not in a caller's process
    (here the input is not a slide, so the run stops at the next check); the command stops
    it when its process ends."""
    calls = _recorded(monkeypatch)
    at_exit: list[Any] = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    monkeypatch.setattr(_app, "IS_COMMAND", command)
    not_a_slide = tmp_path / "notes.txt"
    not_a_slide.write_text("not a slide")
    args = ["run", str(not_a_slide), "--out", str(tmp_path / "out"), *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert calls == started
    # a server started is stopped when the command's process ends
    stops = [f for f in at_exit if getattr(f, "__name__", "") == "stop_fork_server"]
    assert [f.__module__ for f in stops] == (["nucscale.cluster._forks"] if started else [])


def test_no_server_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS's system libraries are not safe to fork once loaded: workers spawn there."""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _forks.start_fork_server(["tifffile"]) is False
    assert _forks.fork_config(1) == {}
