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


def _kept_after_free() -> tuple[int, dict[str, int]]:
    """Free bytes the worker's heaps hold right after a 16 MiB array was made, filled and
    freed (glibc's ``mallinfo2``), and what the worker's allocator tuning set."""
    import ctypes

    import numpy as np

    from nucscale.cluster._malloc import APPLIED

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]  # fmt: skip

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = Mallinfo2
    np.ones(2 * 2**20, np.float64).sum()
    return int(mallinfo2().fordblks), dict(APPLIED)


def test_workers_keep_freed_memory() -> None:
    """Dask starts workers with a 64 KiB trim threshold, which handed every freed buffer back
    to the kernel (each reuse faulted and zeroed its pages again: the forward ran at half
    speed); the plugin makes the worker keep them for the next task."""
    with get_client(workers=1, dashboard_address=None) as client:
        ((kept, applied),) = client.run(_kept_after_free).values()
    assert applied == {"trim_threshold": 64 * 2**20, "mmap_threshold": 32 * 2**20}
    assert kept >= 16 * 2**20, kept
