"""Getting a Dask client: a local cluster, an existing scheduler, or workers started as batch
jobs (SLURM, PBS, LSF, SGE, HTCondor) or Kubernetes pods. Nothing else in nucscale knows which.

The names load on first use (PEP 562): importing a submodule, as the ``nucscale`` command does
with :mod:`nucscale.cluster._forks` to start the local workers' fork server first thing, does
not wait for the cluster client and the job queues (``distributed`` itself still loads, for its
configuration): 0.22 -> 0.17 s from the CLI's import to the server, whose imports are what the
local cluster waits for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nucscale.cluster._client import (
        Remote,
        cpu_workers,
        default_workers,
        get_client,
        gpu_cluster,
        gpu_workers,
    )
    from nucscale.cluster._jobqueue import KINDS, JobOptions

#: Each public name and the submodule that defines it.
_HOME = {
    "KINDS": "_jobqueue",
    "JobOptions": "_jobqueue",
    "Remote": "_client",
    "cpu_workers": "_client",
    "default_workers": "_client",
    "get_client": "_client",
    "gpu_cluster": "_client",
    "gpu_workers": "_client",
}

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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups find it without coming here
    return value
