"""The ``--cluster`` options of ``nucscale run``: where the workers come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from nucscale.cluster import Remote

_PANEL = "Cluster (workers as batch jobs or pods)"

ClusterOption = Annotated[
    str | None,
    typer.Option(
        help="Start workers as jobs of slurm, pbs, lsf, sge or htcondor (dask-jobqueue; site "
        "settings from jobqueue.yaml), or as kubernetes pods (Dask operator).",
        rich_help_panel=_PANEL,
    ),
]
CoresOption = Annotated[
    int | None,
    typer.Option(
        help="Cores per worker job (one single-threaded worker each); default: jobqueue.yaml.",
        rich_help_panel=_PANEL,
    ),
]
MemoryOption = Annotated[
    str | None,
    typer.Option(help="Memory per worker job, e.g. 32GiB; default: jobqueue.yaml.",
                 rich_help_panel=_PANEL),
]  # fmt: skip
QueueOption = Annotated[
    str | None, typer.Option(help="Queue (SLURM partition).", rich_help_panel=_PANEL)
]
AccountOption = Annotated[
    str | None, typer.Option(help="Account (project) charged.", rich_help_panel=_PANEL)
]
WalltimeOption = Annotated[
    str | None, typer.Option(help="Walltime per job, e.g. 04:00:00.", rich_help_panel=_PANEL)
]
MinJobsOption = Annotated[
    int, typer.Option(help="Jobs kept while the run lasts (adaptive scaling).",
                      rich_help_panel=_PANEL)
]  # fmt: skip
MaxJobsOption = Annotated[
    int, typer.Option(help="Most jobs at once (adaptive scaling).", rich_help_panel=_PANEL)
]
JobExtraOption = Annotated[
    list[str] | None,
    typer.Option(help="Another job directive (repeatable), e.g. --job-extra=--constraint=avx2.",
                 rich_help_panel=_PANEL),
]  # fmt: skip
JobWaitOption = Annotated[
    float, typer.Option(help="Seconds to wait for the first worker job to start.",
                        rich_help_panel=_PANEL)
]  # fmt: skip
ClusterSpecOption = Annotated[
    Path | None,
    typer.Option(help="kubernetes: a DaskCluster resource (deploy/kubernetes/daskcluster.yaml).",
                 rich_help_panel=_PANEL),
]  # fmt: skip
ImageOption = Annotated[
    str | None,
    typer.Option(help="kubernetes: the worker image (default: this version's nucscale image).",
                 rich_help_panel=_PANEL),
]  # fmt: skip


def remote(
    kind: str | None,
    out: Path,
    *,
    cores: int | None,
    memory: str | None,
    queue: str | None,
    account: str | None,
    walltime: str | None,
    min_jobs: int,
    max_jobs: int,
    job_extra: list[str] | None,
    job_wait: float,
    gpu: bool,
    spec: Path | None,
    image: str | None,
) -> Remote | None:
    """The :class:`~nucscale.cluster.Remote` the options describe (None: no ``--cluster``);
    options for a cluster given without ``--cluster`` are refused."""
    from nucscale.errors import ConfigError

    given = [
        name
        for name, value in (
            ("--cores", cores), ("--memory", memory), ("--queue", queue),
            ("--account", account), ("--walltime", walltime), ("--job-extra", job_extra),
            ("--cluster-spec", spec), ("--image", image),
        )
        if value
    ]  # fmt: skip
    if kind is None:
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --cluster")
        return None
    # imported only now: a plain run's first checks do not wait for Dask to load
    from nucscale.cluster import KINDS, JobOptions, Remote

    if kind not in (*KINDS, "kubernetes"):
        raise ConfigError(
            f"--cluster must be one of {', '.join((*KINDS, 'kubernetes'))}, not {kind!r}"
        )
    jobs = JobOptions(
        cores=cores, memory=memory, queue=queue, account=account, walltime=walltime,
        min_jobs=min_jobs, max_jobs=max_jobs, gpu=gpu, extra=tuple(job_extra or ()),
    )  # fmt: skip
    jobs.check()
    return Remote(kind, out, jobs, job_wait, spec, image)
