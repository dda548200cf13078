"""The local cluster: worker processes and the threads their kernels get."""

from __future__ import annotations

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
