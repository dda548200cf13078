"""Getting a Dask ``Client``: a local cluster of worker processes, or an existing scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from nucscale.errors import ConfigError

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One single-threaded worker process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def get_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    dashboard_address: str | None = ":8787",
    memory_limit: str = "auto",
    gpu: bool = False,
) -> Iterator[Client]:
    """Yield a connected client and close what was started here on exit.

    Parameters
    ----------
    scheduler:
        Address of a running scheduler (``tcp://host:8786``); ``None`` starts a LocalCluster.
    workers:
        Worker processes for the LocalCluster (default: one per core); each has one thread,
        because numpy/torch kernels inside a task already use the core.
    dashboard_address:
        Where the LocalCluster serves its dashboard; ``None`` disables it.
    gpu:
        Start a dask-cuda ``LocalCUDACluster`` (one worker per visible GPU, each advertising a
        ``GPU=1`` resource) instead of CPU workers; needs the ``gpu`` extra.
    """
    if scheduler is not None:
        if workers is not None:
            raise ConfigError(
                "--workers applies to the local cluster only; omit it with --scheduler"
            )
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    if gpu:
        with _cuda_cluster(dashboard_address, memory_limit) as cluster, Client(cluster) as client:
            yield client
        return
    n = workers if workers is not None else default_workers()
    if n < 1:
        raise ConfigError(f"--workers must be at least 1, got {n}")
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _cuda_cluster(dashboard_address: str | None, memory_limit: str) -> LocalCluster:
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise ConfigError(
            "--gpu needs dask-cuda: pip install 'nucscale[gpu]' on a machine with CUDA"
        ) from None
    try:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--gpu: torch sees no CUDA device on this machine")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    cluster: LocalCluster = LocalCUDACluster(
        threads_per_worker=1,
        dashboard_address=dashboard_address,
        memory_limit=memory_limit,
        resources={"GPU": 1},
    )
    return cluster


def gpu_workers(client: Client) -> int:
    """Workers of the cluster that advertise a ``GPU`` resource."""
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for w in workers.values() if w.get("resources", {}).get("GPU", 0) >= 1)
