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
