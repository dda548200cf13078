"""Workers as batch jobs of an HPC scheduler (SLURM, PBS, LSF, SGE, HTCondor), through
dask-jobqueue.

The site's queue, account, walltime, interface and any other directive stay in the standard Dask
configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_CONFIG``, ``DASK_JOBQUEUE__SLURM__...``);
what :class:`JobOptions` sets overrides them. nucscale adds only what its graph needs: one
single-threaded worker process per core of a job (the same rule as the local cluster, so results
do not depend on where they ran), thread variables pinned to one thread, GPU jobs that start
``dask cuda worker`` with the ``GPU`` resource, and the jobs' logs under ``OUT/logs/workers``
(never the submit directory: nothing is written outside ``--out``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.config

from nucscale.cluster._forks import ZARR_THREADS
from nucscale.cluster._housekeeping import SETTINGS, env_name
from nucscale.cluster._malloc import ARENA_MAX, ARROW_POOL_ENV
from nucscale.errors import ConfigError

log = logging.getLogger(__name__)

#: ``--cluster`` choices: dask-jobqueue's class and the command that submits a job.
KINDS: dict[str, tuple[str, str]] = {
    "slurm": ("SLURMCluster", "sbatch"),
    "pbs": ("PBSCluster", "qsub"),
    "lsf": ("LSFCluster", "bsub"),
    "sge": ("SGECluster", "qsub"),
    "htcondor": ("HTCondorCluster", "condor_submit"),
}

#: How each scheduler is asked for one GPU per job (others: ``job-extra-directives`` in
#: jobqueue.yaml, which sites already keep).
_GPU_DIRECTIVE = {"slurm": "--gres=gpu:1", "pbs": "-l ngpus=1", "lsf": '-gpu "num=1"'}

#: Environment of every worker job: kernels inside a task use the one core the task has; the
#: worker logs its start, its scheduler and its end to the job's log (the console of
#: ``nucscale run`` shows Dask's warnings only, and jobs inherit its environment).
_PROLOGUE = [
    "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1",
    f"export {ZARR_THREADS}=${{{ZARR_THREADS}:-1}}",  # zarr's pool (_forks.py); the user's wins
    f"export MALLOC_ARENA_MAX={ARENA_MAX}",  # malloc arenas per worker (before glibc starts)
    f"export {ARROW_POOL_ENV}=${{{ARROW_POOL_ENV}:-system}}",  # Arrow's pool (_malloc.py)
    "export DASK_LOGGING__DISTRIBUTED=info",
    # no statistical profiler, fewer wake-ups (_housekeeping.py); the user's values win
    *(f"export {env_name(k)}=${{{env_name(k)}:-{v}}}" for k, v in SETTINGS.items()),
]


@dataclass(frozen=True)
class JobOptions:
    """What the command line says about worker jobs; ``None`` leaves it to jobqueue.yaml.

    Attributes
    ----------
    cores, memory:
        Per job (``memory`` as ``"16GiB"``); each job runs ``cores`` single-threaded workers
        (a GPU job: one worker with ``cores`` threads).
    queue, account, walltime:
        The scheduler's queue (partition), account (project) and walltime (``"02:00:00"``).
    min_jobs, max_jobs:
        Adaptive scaling between these numbers of jobs (equal: a fixed number).
    gpu:
        One GPU per job, workers started by ``dask cuda worker`` with ``--resources GPU=1``.
    extra:
        More job directives, e.g. ``("--constraint=avx2",)``.
    """

    cores: int | None = None
    memory: str | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    min_jobs: int = 1
    max_jobs: int = 4
    gpu: bool = False
    extra: tuple[str, ...] = field(default_factory=tuple)

    def check(self) -> None:
        """Refuse impossible job counts and cores before anything is submitted."""
        if self.min_jobs < 0 or self.max_jobs < 1 or self.min_jobs > self.max_jobs:
            raise ConfigError(
                f"--min-jobs {self.min_jobs} and --max-jobs {self.max_jobs}: need "
                "0 <= min <= max and max >= 1"
            )
        if self.cores is not None and self.cores < 1:
            raise ConfigError(f"--cores must be at least 1, got {self.cores}")


def log_folder(out: Path) -> Path:
    """Where the worker jobs' stdout and stderr go: ``OUT/logs/workers``."""
    return out / "logs" / "workers"


def job_kwargs(kind: str, options: JobOptions, logs: Path, dashboard: str | None) -> dict[str, Any]:
    """The keyword arguments of dask-jobqueue's cluster class for ``kind`` (pure: reads only the
    Dask configuration, so the job script can be checked without a scheduler)."""
    if kind not in KINDS:
        raise ConfigError(f"--cluster {kind!r}: dask-jobqueue knows {', '.join(KINDS)}")
    conf = f"jobqueue.{kind}"
    cores = options.cores if options.cores is not None else dask.config.get(f"{conf}.cores")
    memory = options.memory if options.memory is not None else dask.config.get(f"{conf}.memory")
    if cores is None or memory is None:
        raise ConfigError(
            f"--cluster {kind}: say how many cores and how much memory a worker job has "
            f"(--cores 8 --memory 32GiB, or cores/memory under jobqueue.{kind} in jobqueue.yaml)"
        )
    extra = list(dask.config.get(f"{conf}.job-extra-directives") or []) + list(options.extra)
    worker_args = list(dask.config.get(f"{conf}.worker-extra-args") or [])
    kwargs: dict[str, Any] = {
        "cores": int(cores),
        "memory": str(memory),
        "processes": 1 if options.gpu else int(cores),
        "log_directory": str(logs),
        "job_script_prologue": [
            *(dask.config.get(f"{conf}.job-script-prologue") or []),
            *_PROLOGUE,
        ],
        "job_extra_directives": extra,
        "worker_extra_args": worker_args,
        "scheduler_options": {
            **(dask.config.get(f"{conf}.scheduler-options") or {}),
            "dashboard_address": dashboard if dashboard is not None else ":0",
        },
    }
    if options.gpu:
        kwargs["worker_command"] = "dask_cuda.cli"
        kwargs["worker_extra_args"] = [*worker_args, "--resources", "GPU=1"]
        if kind in _GPU_DIRECTIVE:
            kwargs["job_extra_directives"] = [*extra, _GPU_DIRECTIVE[kind]]
    if options.queue is not None:
        kwargs["queue"] = options.queue
    if options.account is not None:
        kwargs["project" if kind == "lsf" else "account"] = options.account
    if options.walltime is not None:
        kwargs["walltime"] = options.walltime
    return kwargs


def start_job_cluster(kind: str, options: JobOptions, out: Path, dashboard: str | None) -> Any:
    """Start the scheduler here and adaptive worker jobs; the caller closes the cluster.

    Raises
    ------
    ConfigError
        dask-jobqueue missing, the submit command not on PATH, or options it refuses.
    """
    options.check()
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("--cluster needs dask-jobqueue: pip install dask-jobqueue") from None
    name, submit = KINDS.get(kind, ("", ""))
    kwargs = job_kwargs(kind, options, log_folder(out), dashboard)
    if shutil.which(submit) is None:
        raise ConfigError(
            f"--cluster {kind}: the job submission command {submit!r} is not on PATH; run "
            f"nucscale where jobs can be submitted (a login node) or load the scheduler's module"
        )
    log_folder(out).mkdir(parents=True, exist_ok=True)
    try:
        cluster = getattr(dask_jobqueue, name)(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--cluster {kind}: {exc}") from None
    cluster.adapt(minimum_jobs=options.min_jobs, maximum_jobs=options.max_jobs)
    return cluster


def wait_for_first_worker(
    client: Any, kind: str, logs: Path, timeout: float, failed: _SubmitFailures | None = None
) -> None:
    """Block until a worker has joined; a job the scheduler refused (``failed``, from
    :func:`watch_submissions`) fails the run with its reason instead of waiting forever."""
    deadline = time.monotonic() + timeout
    while not client.scheduler_info().get("workers"):
        if failed is not None and failed.first is not None:
            raise ConfigError(f"--cluster {kind}: a worker job was refused: {failed.first}")
        if time.monotonic() > deadline:
            raise ConfigError(
                f"--cluster {kind}: no worker started within {timeout:.0f} s (still queued? "
                f"see the scheduler's queue, and the worker logs in {logs})"
            )
        time.sleep(0.5)


@contextmanager
def watch_submissions() -> Iterator[_SubmitFailures]:
    """Turn dask-jobqueue's failed job submissions into one warning line each.

    dask-jobqueue submits jobs in the background (adaptive scaling), and a refused submission
    surfaces only as an error record of tornado's event loop with the whole traceback. While
    this is active, such records are dropped from the console and their reason (the submit
    command's stderr) is kept: before the first worker joined, it ends the run
    (:func:`wait_for_first_worker`); after, it is one warning line.
    """
    failures = _SubmitFailures()
    loop_log = logging.getLogger("tornado.application")
    loop_log.addFilter(failures)
    try:
        yield failures
    finally:
        loop_log.removeFilter(failures)


class _SubmitFailures(logging.Filter):
    """Drops the event loop's records of a failed submit command; keeps the first reason."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None
        self.loud = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = str(exc) if exc is not None else ""
        if not (isinstance(exc, RuntimeError) and "Command exited with non-zero" in text):
            return True
        reason = submit_reason(text)
        if self.first is None:
            self.first = reason
        if self.loud:
            log.warning("a worker job was refused: %s", reason)
        return False


def submit_reason(text: str) -> str:
    """The submit command's stderr from dask-jobqueue's error text, on one line."""
    _, _, err = text.partition("stderr:")
    lines = [line.strip() for line in (err or text).splitlines() if line.strip()]
    return "; ".join(lines)[:500] or "the submit command failed"
