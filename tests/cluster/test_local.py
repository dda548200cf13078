"""The local cluster: worker processes and the threads their kernels get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest

from nucscale.cluster import get_client
from nucscale.errors import ConfigError


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def test_workers_run_one_thread_unless_told() -> None:
    """One thread by default (outputs independent of the worker count); --threads gives more."""
    with get_client(workers=1, dashboard_address=None) as client:
        assert set(client.run(_torch_threads).values()) == {1}
    with get_client(workers=1, threads=2, dashboard_address=None) as client:
        assert set(client.run(_torch_threads).values()) == {2}


def test_threads_are_for_the_local_cluster_only() -> None:
    with pytest.raises(ConfigError, match="--threads"), get_client("tcp://127.0.0.1:9", threads=2):
        pass


def _touch_24mib() -> dict[str, int]:
    """Make, fill and free a 24 MiB array (below the mmap threshold: from the heap); return
    what the worker's allocator tuning set."""
    import numpy as np

    from nucscale.cluster._malloc import APPLIED

    np.ones(3 * 2**20, np.float64).sum()
    return dict(APPLIED)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def test_workers_keep_freed_memory_within_a_task_and_release_it_after() -> None:
    """Dask starts workers with a 64 KiB trim threshold, which handed every freed buffer back
    to the kernel at once (each reuse faulted and zeroed its pages again: 79 vs 47 s for 13
    tasks of a real slide, benchmarks/worker_malloc.py). The plugin keeps freed memory while
    a task runs (``client.run`` is not a task) and hands it back when the task ends."""
    mib = 2**20
    with get_client(workers=1, dashboard_address=None) as client:
        (before,) = client.run(_rss).values()
        (applied,) = client.run(_touch_24mib).values()
        (kept,) = client.run(_rss).values()
        assert client.submit(_touch_24mib, pure=False).result() == applied
        (after_task,) = client.run(_rss).values()
    assert applied == {"trim_threshold": 64 * mib, "mmap_threshold": 32 * mib}
    assert kept - before >= 20 * mib, (before, kept)
    assert kept - after_task >= 16 * mib, (kept, after_task)


def _cuda_env() -> str | None:
    import os

    return os.environ.get("CUDA_VISIBLE_DEVICES")


def _arena_max() -> str | None:
    import os

    return os.environ.get("MALLOC_ARENA_MAX")


def _profiling(dask_worker: Any) -> bool:
    return "profile" in dask_worker.periodic_callbacks


def _wake_ups(dask_worker: Any) -> tuple[float, float, float]:
    """A worker's or nanny's loop tick, memory poll and system monitor, in seconds."""
    monitor = dask_worker.periodic_callbacks["monitor"].callback_time / 1000
    return dask_worker._tick_interval, dask_worker.memory_manager.memory_monitor_interval, monitor


def _scheduler_monitor(dask_scheduler: Any) -> float:
    """The scheduler's system monitor interval, in seconds."""
    return float(dask_scheduler.periodic_callbacks["monitor"].callback_time / 1000)


def _arrow_pool() -> tuple[str, str | None]:
    """pyarrow's default pool, and the variable Arrow's C++ default pool was chosen by when
    pyarrow loaded (it reads it once)."""
    import os

    import pyarrow as pa

    from nucscale.cluster._malloc import ARROW_POOL_ENV

    return str(pa.default_memory_pool().backend_name), os.environ.get(ARROW_POOL_ENV)


#: torch's variable for its CPU buffers on transparent huge pages (torch >= 2.2).
_TORCH_THP_ENV = "THP_MEM_ALLOC_ENABLE"


def _huge_tensors() -> tuple[str | None, int]:
    """The worker's torch huge-page variable, and how many KiB more of its memory sit on
    transparent huge pages while it holds four 24 MiB torch tensors."""
    import os

    import torch

    def huge() -> int:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))

    before = huge()
    held = [torch.ones(6 * 2**20) for _ in range(4)]  # float32: 24 MiB each
    grown = huge() - before
    del held
    return os.environ.get(_TORCH_THP_ENV), grown


def _thp_mode() -> str | None:
    """The kernel's transparent huge page mode (always, madvise, never), None without THP."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


def test_an_exported_torch_huge_page_setting_reaches_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not the workers' default (nucscale/cluster/_malloc.py: 40,000² in 16 % less time, but
    the peak per worker +22 % across slide sizes), so a user opts in by exporting torch's
    ``THP_MEM_ALLOC_ENABLE=1``, which torch reads at its first allocation: local workers
    start with it, and their buffers of 2 MiB and more then sit on transparent huge pages."""
    mode = _thp_mode()
    if mode not in ("madvise", "always"):
        pytest.skip(f"this kernel's transparent huge pages are {mode or 'absent'}")
    monkeypatch.setenv(_TORCH_THP_ENV, "1")
    with get_client(workers=1, dashboard_address=None) as client:
        ((variable, huge_kib),) = client.run(_huge_tensors).values()
    assert variable == "1"
    assert huge_kib >= 48 * 1024, huge_kib  # of the 96 MiB held


def test_workers_start_with_two_malloc_arenas_no_profiler_and_fewer_wake_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """glibc reads MALLOC_ARENA_MAX at a process's start: it must be in the worker's
    environment from the spawn on (local LocalCluster and --gpu layout alike). Dask's
    statistical profiler is off and the loops wake up less often
    (nucscale.cluster._housekeeping), unless the environment asks otherwise; pyarrow allocates
    with the C library's allocator (nucscale.cluster._malloc), unless the environment names
    another pool."""
    from distributed import Client

    from nucscale.cluster import gpu_cluster
    from nucscale.cluster._housekeeping import PROFILE_ENV, SETTINGS, env_name
    from nucscale.cluster._malloc import ARROW_POOL_ENV

    for key in SETTINGS:
        monkeypatch.delenv(env_name(key), raising=False)
    monkeypatch.delenv(ARROW_POOL_ENV, raising=False)
    with get_client(workers=1, dashboard_address=None) as client:
        assert set(client.run(_arena_max).values()) == {"2"}
        assert set(client.run(_profiling).values()) == {False}
        assert set(client.run(_arrow_pool).values()) == {("system", "system")}
        assert set(client.run(_wake_ups).values()) == {(0.1, 0.25, 2.0)}
        assert set(client.run(_wake_ups, nanny=True).values()) == {(0.1, 0.25, 2.0)}
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval) == 0.1
        assert client.run_on_scheduler(_scheduler_monitor) == 2.0
    with gpu_cluster(1, 1, dashboard_address=None) as cluster, Client(cluster) as client:
        assert set(client.run(_arena_max).values()) == {"2"}
        assert set(client.run(_profiling).values()) == {False}
        assert set(client.run(_arrow_pool).values()) == {("system", "system")}
    monkeypatch.setenv(PROFILE_ENV, "True")
    monkeypatch.setenv(ARROW_POOL_ENV, "mimalloc")
    tick = "distributed.admin.tick.interval"
    monkeypatch.setenv(env_name(tick), "50ms")  # and in Dask's configuration, as read at import
    with dask.config.set({tick: "50ms"}), get_client(workers=1, dashboard_address=None) as client:
        assert set(client.run(_profiling).values()) == {True}
        assert set(client.run(_arrow_pool).values()) == {("mimalloc", "mimalloc")}
        assert set(client.run(_wake_ups).values()) == {(0.05, 0.25, 2.0)}


def test_gpu_cluster_puts_one_worker_on_each_gpu_beside_cpu_workers() -> None:
    """`--gpu`'s local layout, started on the CPU (the layout, not the device, is tested): GPU
    worker i sees device i alone and runs ``gpu_tasks`` forward tasks at once; the CPU workers
    see no device and have no resource, so post-processing runs there while the GPU computes."""
    from distributed import Client

    from nucscale.cluster import gpu_cluster

    with (
        gpu_cluster(2, 2, dashboard_address=None, gpu_tasks=3) as cluster,
        Client(cluster) as client,
    ):
        info = client.scheduler_info()["workers"]
        env = client.run(_cuda_env)
        threads = client.run(_torch_threads)
    resources = {a: w.get("resources", {}) for a, w in info.items()}
    gpu = sorted(a for a, r in resources.items() if r == {"GPU": 3})
    cpu = sorted(a for a, r in resources.items() if not r)
    assert len(gpu) == 2 and len(cpu) == 2, resources
    assert sorted(env[a] for a in gpu) == ["0", "1"]
    assert {env[a] for a in cpu} == {""}
    # three forward tasks at once on each GPU worker; one thread per task for torch's kernels
    assert {info[a]["nthreads"] for a in gpu} == {3} and {info[a]["nthreads"] for a in cpu} == {1}
    assert set(threads.values()) == {1}
    assert all(a.startswith("tcp://127.0.0.1:") for a in info)


def test_gpu_cluster_refuses_no_cpu_worker() -> None:
    from nucscale.cluster import gpu_cluster

    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        gpu_cluster(1, 0)


def _freeze_count_at_exit(folder: str) -> None:
    """At this worker process's exit, write how many objects the collector had frozen."""
    import atexit
    import gc
    import os
    from pathlib import Path

    def write() -> None:
        Path(folder, str(os.getpid())).write_text(str(gc.get_freeze_count()))

    atexit.register(write)


def _freeze_count() -> int:
    import gc

    return gc.get_freeze_count()


def test_closing_workers_leave_their_objects_to_the_exit(tmp_path: Any) -> None:
    """A closing worker freezes its objects out of the collector's last walks (the processes
    end in 0.2 instead of 0.9 s, nucscale/cluster/_exit.py); a worker that goes on running
    keeps collecting when the plugin is removed."""
    with get_client(workers=2, dashboard_address=None) as client:
        client.run(_freeze_count_at_exit, str(tmp_path))
        assert set(client.run(_freeze_count).values()) == {0}
        assert len(list(tmp_path.iterdir())) == 0
    counts = [int(p.read_text()) for p in tmp_path.iterdir()]
    assert len(counts) == 2
    assert min(counts) > 10_000  # a worker's modules and objects, torch's not even loaded

    with get_client(workers=1, dashboard_address=None) as client:
        client.unregister_worker_plugin("nucscale-quick-exit")
        assert set(client.run(_freeze_count).values()) == {0}


def _loaded(names: list[str]) -> list[bool]:
    import sys

    return [n in sys.modules for n in names]


def test_workers_load_the_named_modules_when_the_plugin_arrives() -> None:
    """Every worker imports the modules at once, before any task (nucscale/cluster/_warm.py);
    one it cannot import is left to the task that needs it."""
    from nucscale.cluster._warm import WarmImports

    names = ["tifffile", "xml.dom.minidom", "nucscale_no_such_module"]
    with get_client(workers=2, dashboard_address=None) as client:
        assert set(map(tuple, client.run(_loaded, names).values())) == {(False, False, False)}
        client.register_plugin(WarmImports(names))
        assert set(map(tuple, client.run(_loaded, names).values())) == {(True, True, False)}


def test_a_failed_heartbeat_is_one_line_and_none_while_closing() -> None:
    """distributed logs a heartbeat that finds the scheduler's connection closed with the
    stream's traceback; the workers' filter keeps it as one line naming the error, and drops
    it once the worker is closing (the cluster ending: the scheduler went first)."""
    import logging
    import sys
    import types

    from distributed.comm.core import CommClosedError
    from distributed.core import Status

    from nucscale.cluster._quiet import QuietInputErrors

    logger = logging.getLogger("distributed.worker")
    before = list(logger.filters)
    worker = types.SimpleNamespace(status=Status.running)
    QuietInputErrors().setup(worker)
    try:
        try:
            raise CommClosedError(
                "in <TCP (closed) ConnectionPool.heartbeat_worker>: Stream is closed"
            )
        except CommClosedError:
            exc_info = sys.exc_info()
        make = lambda: logger.makeRecord(  # noqa: E731
            logger.name, logging.ERROR, __file__, 1,
            "Failed to communicate with scheduler during heartbeat.", (), exc_info,
        )  # fmt: skip
        record = make()
        assert logger.filter(record)
        text = logging.Formatter().format(record)
        assert text == (
            "Failed to communicate with scheduler during heartbeat: CommClosedError: "
            "in <TCP (closed) ConnectionPool.heartbeat_worker>: Stream is closed"
        )
        worker.status = Status.closing
        assert not logger.filter(make())
        other = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "else", (), exc_info)
        assert logger.filter(other) and other.exc_info is exc_info  # other records untouched
    finally:
        logger.filters[:] = before
