"""Getting a Dask client: a local cluster, an existing scheduler, or workers started as batch
jobs (SLURM, PBS, LSF, SGE, HTCondor) or Kubernetes pods. Nothing else in nucscale knows which."""

from nucscale.cluster._client import (
    Remote,
    cpu_workers,
    default_workers,
    get_client,
    gpu_cluster,
    gpu_workers,
)
from nucscale.cluster._jobqueue import KINDS, JobOptions

__all__ = [
    "KINDS",
    "JobOptions",
    "Remote",
    "cpu_workers",
    "default_workers",
    "get_client",
    "gpu_cluster",
    "gpu_workers",
]
