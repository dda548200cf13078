"""Getting a Dask ``Client``: a local cluster of worker processes, an existing scheduler, or
workers started as jobs of a batch scheduler or as Kubernetes pods."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

from nucscale.cluster._forks import fork_config, thread_env
from nucscale.cluster._housekeeping import housekeeping_config
from nucscale.cluster._jobqueue import JobOptions
from nucscale.cluster._malloc import worker_environ
from nucscale.cluster._versions import check_versions
from nucscale.errors import ConfigError

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One single-threaded worker process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Remote:
    """Workers started elsewhere by a cluster manager (``--cluster``).

    Attributes
    ----------
    kind:
        ``slurm``, ``pbs``, ``lsf``, ``sge``, ``htcondor`` (dask-jobqueue) or ``kubernetes``.
    out:
        The run's output folder: job logs go to ``OUT/logs/workers``.
    jobs:
        Cores, memory, queue, adaptive range and GPU of the worker jobs.
    wait:
        Seconds to wait for the first worker before giving up.
    spec, image:
        Kubernetes only: a DaskCluster resource file, or the worker image.
    """

    kind: str
    out: Path
    jobs: JobOptions = field(default_factory=JobOptions)
    wait: float = 3600.0
    spec: Path | None = None
    image: str | None = None


@contextmanager
def get_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    threads: int | None = None,
    dashboard_address: str | None = ":8787",
    memory_limit: str = "auto",
    gpu: bool = False,
    remote: Remote | None = None,
) -> Iterator[Client]:
    """Yield a connected client and close what was started here on exit.

    Parameters
    ----------
    scheduler:
        Address of a running scheduler (``tcp://host:8786``); ``None`` starts a LocalCluster.
    workers:
        Worker processes for the LocalCluster (default: one per core); each runs one task at a
        time. With ``gpu``: the CPU workers beside the GPU ones (default: the cores left over).
    threads:
        Threads each local worker gives the kernels inside a task (torch's convolutions,
        OpenMP, BLAS); default 1, so results do not depend on the number of workers: some
        networks' CPU convolutions round differently with another thread count (HoVer-Net's
        probability maps differ by up to ~4e-3 between 1 and 2 threads; the default U-Net's
        are bit-identical as OpenVINO runs it, its default on the CPU, and differ by one
        float16 step here and there in torch's float32). More threads help when there
        are fewer tiles than cores (``--workers 1 --threads 2`` for one tile on two cores).
    dashboard_address:
        Where the LocalCluster serves its dashboard; ``None`` disables it. A port in use is
        replaced by a free one without a warning (the client's ``dashboard_link`` says which).
    gpu:
        Start one worker per visible GPU (advertising a ``GPU=1`` resource: the network's
        forward tasks run there) beside ``workers`` CPU workers for everything else
        (:func:`gpu_cluster`).
    remote:
        Start the scheduler here and the workers as batch jobs or pods (:class:`Remote`).
    """
    if (scheduler is not None or remote is not None) and (
        workers is not None or threads is not None
    ):
        where = "--scheduler (give `dask worker` its own)" if remote is None else "--cluster"
        raise ConfigError(
            f"--workers and --threads apply to the local cluster only; omit them with {where}"
        )
    if scheduler is not None and remote is not None:
        raise ConfigError("give either --scheduler or --cluster, not both")
    if remote is not None:
        with _remote_client(remote, dashboard_address) as client:
            yield client
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            check_versions(client)
            _prepare(client)
            yield client
        finally:
            client.close()
        return
    if gpu:
        with _moving_port():
            mixed = gpu_cluster(
                _visible_gpus(), workers, threads=threads or 1,
                dashboard_address=dashboard_address, memory_limit=memory_limit,
            )  # fmt: skip
        with mixed, Client(mixed) as client:
            _prepare(client)
            yield client
        return
    n = workers if workers is not None else default_workers()
    if n < 1:
        raise ConfigError(f"--workers must be at least 1, got {n}")
    k = 1 if threads is None else threads
    if k < 1:
        raise ConfigError(f"--threads must be at least 1, got {k}")
    settings = {**worker_environ(), **housekeeping_config(), **fork_config(k)}
    with _moving_port(), dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
            env=thread_env(k),
        )
    with cluster, Client(cluster) as client:
        _prepare(client)
        yield client


@contextmanager
def _remote_client(remote: Remote, dashboard_address: str | None) -> Iterator[Client]:
    """The scheduler in this process, workers as jobs or pods; all closed on exit (the jobs
    cancelled), whatever happened."""
    from nucscale.cluster._jobqueue import (
        log_folder,
        start_job_cluster,
        wait_for_first_worker,
        watch_submissions,
    )

    with watch_submissions() as failed, _moving_port():
        if remote.kind == "kubernetes":
            from nucscale.cluster._kubernetes import start_kube_cluster

            cluster = start_kube_cluster(remote.jobs, remote.spec, remote.image)
        else:
            cluster = start_job_cluster(remote.kind, remote.jobs, remote.out, dashboard_address)
        try:
            with Client(cluster) as client:
                _prepare(client)
                logs = log_folder(remote.out)
                log.info(
                    "--cluster %s: waiting for the first worker (%d to %d jobs; logs in %s)",
                    remote.kind, remote.jobs.min_jobs, remote.jobs.max_jobs, logs,
                )  # fmt: skip
                wait_for_first_worker(client, remote.kind, logs, remote.wait, failed)
                check_versions(client)
                yield client
        finally:
            _close(cluster)


def _close(cluster: Any) -> None:
    """Close the cluster and cancel its jobs. distributed asserts, after closing the scheduler,
    that every job it created has closed; a job whose submission was refused never started and
    fails that assertion, which says nothing the user needs (the refusal was reported)."""
    try:
        cluster.close()
    except AssertionError:
        log.debug("a worker job that never started was left out of the cluster's close")


@contextmanager
def _moving_port() -> Iterator[None]:
    """Silence distributed's "Port 8787 is already in use" warning (printed once per address
    family) while a cluster starts: moving to a free port is what the user wants, and the CLI
    prints the dashboard's actual link."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Port \d+ is already in use", UserWarning)
        yield


def _prepare(client: Client) -> None:
    """Workers log no traceback for nucscale's own errors (:mod:`nucscale.cluster._quiet`),
    keep their buffers between tasks (:mod:`nucscale.cluster._malloc`) and end without a
    last walk of the garbage collector (:mod:`nucscale.cluster._exit`)."""
    from nucscale.cluster._exit import QuickExit
    from nucscale.cluster._malloc import SteadyMalloc
    from nucscale.cluster._quiet import QuietInputErrors

    client.register_plugin(QuietInputErrors())
    client.register_plugin(SteadyMalloc())
    client.register_plugin(QuickExit())


def _visible_gpus() -> int:
    """CUDA devices torch sees here; none is a clear error for ``--gpu``."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--gpu: torch sees no CUDA device on this machine")
    return torch.cuda.device_count()


def gpu_cluster(
    gpus: int,
    workers: int | None = None,
    *,
    threads: int = 1,
    dashboard_address: str | None = ":8787",
    memory_limit: str = "auto",
    gpu_tasks: int = 1,
) -> SpecCluster:
    """A local cluster of ``gpus`` GPU workers and ``workers`` CPU workers (default: the cores
    left over, at least one), all single-threaded worker processes on 127.0.0.1.

    GPU worker ``i`` sees only device ``i`` (``CUDA_VISIBLE_DEVICES``) and advertises
    ``GPU=1``, so it runs the network's forward tasks and nothing else
    (:func:`nucscale.pipeline._cohort` restricts every other task to the CPU workers); CPU
    workers see no device, so their post-processing and features never touch it and run while
    the GPU computes the next tiles. Separate processes, not threads of the GPU worker: the
    post-processing holds the GIL for much of its time and would stall the feeding of the GPU.
    dask-cuda's ``LocalCUDACluster`` is not used: it starts GPU workers only, and its extras
    (RMM pools, UCX, spilling to host) serve CuPy/cuDF data, not torch's forward.

    ``gpu_tasks``: forward tasks a GPU worker runs at once (its threads, and its ``GPU``
    amount): a forward task's reading of its window and writing of its maps then overlap
    another's network.
    """
    if workers is None:
        workers = max(1, default_workers() - gpus)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")

    def nanny(env: dict[str, str], resources: dict[str, float] | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "nthreads": int(resources["GPU"]) if resources else 1,
            "host": "127.0.0.1", "memory_limit": memory_limit,
            "env": {**thread_env(threads), **env},
        }  # fmt: skip
        if resources:
            options["resources"] = resources
        return {"cls": Nanny, "options": options}

    cpu = nanny({"CUDA_VISIBLE_DEVICES": ""})
    specs = {
        f"gpu-{i}": nanny({"CUDA_VISIBLE_DEVICES": str(i)}, {"GPU": gpu_tasks}) for i in range(gpus)
    }
    specs.update({f"cpu-{i}": cpu for i in range(workers)})
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": "127.0.0.1", "port": 0, "dashboard": dashboard_address is not None,
            "dashboard_address": dashboard_address,
        },
    }  # fmt: skip
    # two malloc arenas per worker, no statistical profiler, fewer wake-ups
    with dask.config.set({**worker_environ(), **housekeeping_config()}):
        return SpecCluster(
            scheduler=scheduler, workers=specs, worker=cpu, silence_logs=logging.WARNING
        )


def gpu_workers(client: Client) -> int:
    """Workers of the cluster that advertise a ``GPU`` resource."""
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for w in workers.values() if w.get("resources", {}).get("GPU", 0) >= 1)


def cpu_workers(client: Client) -> list[str]:
    """Addresses of the workers that advertise no ``GPU`` resource."""
    workers = client.scheduler_info().get("workers", {})
    return sorted(a for a, w in workers.items() if w.get("resources", {}).get("GPU", 0) < 1)
