"""The local cluster: worker processes and the threads their kernels get."""

from __future__ import annotations

import pytest

from nucscale.cluster import default_workers, get_client
from nucscale.errors import ConfigError


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def test_one_worker_gets_every_core_and_threads_override() -> None:
    with get_client(workers=1, dashboard_address=None) as client:
        assert set(client.run(_torch_threads).values()) == {default_workers()}
    with get_client(workers=1, threads=1, dashboard_address=None) as client:
        assert set(client.run(_torch_threads).values()) == {1}


def test_threads_are_for_the_local_cluster_only() -> None:
    with pytest.raises(ConfigError, match="--threads"), get_client("tcp://127.0.0.1:9", threads=2):
        pass
