"""Workers as Kubernetes pods, through the Dask Kubernetes operator (dask-kubernetes).

The cluster is a ``DaskCluster`` resource: either the file given with ``--cluster-spec`` (the
one in ``deploy/kubernetes/daskcluster.yaml`` mounts the shared volume with slides and outputs,
which the operator's keyword arguments cannot), or one made from the image and the job options.
The operator must be installed in the cluster (``helm install dask-kubernetes-operator``), and
this process must reach the API (kubeconfig or in-cluster service account).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nucscale import __version__
from nucscale.cluster._forks import thread_env
from nucscale.cluster._housekeeping import housekeeping_env
from nucscale.cluster._jobqueue import JobOptions
from nucscale.cluster._malloc import ARENA_MAX, ARROW_POOL_ENV
from nucscale.errors import ConfigError

#: The image `deploy/Dockerfile` builds for this version (``-cuda`` for GPU workers).
IMAGE = f"ghcr.io/nucscale/nucscale:{__version__}"

#: Worker environment: one thread for a task's kernels, :data:`ARENA_MAX` malloc arenas, Arrow's
#: system pool (:mod:`nucscale.cluster._malloc`), no statistical profiler and fewer wake-ups
#: (:mod:`nucscale.cluster._housekeeping`).
_WORKER_ENV = {
    **thread_env(1),  # one kernel thread, one thread in zarr's pool (_forks.py)
    "MALLOC_ARENA_MAX": str(ARENA_MAX), ARROW_POOL_ENV: os.environ.get(ARROW_POOL_ENV, "system"),
    **housekeeping_env(),
}  # fmt: skip


def load_spec(path: Path) -> dict[str, Any]:
    """A ``DaskCluster`` resource from a YAML file; refused with the reason if it is not one."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot read the cluster spec: {reason}") from None
    if not isinstance(spec, dict) or spec.get("kind") != "DaskCluster":
        raise ConfigError(f"{path}: not a DaskCluster resource (kind: DaskCluster)")
    return spec


def worker_resources(options: JobOptions) -> dict[str, dict[str, str]]:
    """Requests and limits of one worker pod from ``--cores``, ``--memory`` and ``--gpu``."""
    requests: dict[str, str] = {}
    if options.cores is not None:
        requests["cpu"] = str(options.cores)
    if options.memory is not None:
        requests["memory"] = options.memory.replace("GiB", "Gi").replace("MiB", "Mi")
    limits = dict(requests)
    if options.gpu:
        limits["nvidia.com/gpu"] = "1"
    return {"requests": requests, "limits": limits}


def start_kube_cluster(options: JobOptions, spec_file: Path | None, image: str | None) -> Any:
    """Create the DaskCluster (or connect to one of the same name) and scale it adaptively."""
    options.check()
    try:
        from dask_kubernetes.operator import KubeCluster, make_cluster_spec
    except ImportError:
        raise ConfigError(
            "--cluster kubernetes needs dask-kubernetes: pip install 'nucscale[kubernetes]'"
        ) from None
    if spec_file is not None:
        spec = load_spec(spec_file)
    else:
        spec = make_cluster_spec(
            name="nucscale",
            image=image or (IMAGE + ("-cuda" if options.gpu else "-cpu")),
            n_workers=options.min_jobs,
            resources=worker_resources(options),
            env=_WORKER_ENV,
            worker_command=["dask", "cuda", "worker"] if options.gpu else "dask-worker",
        )
    try:
        cluster = KubeCluster(custom_cluster_spec=spec)
    except Exception as exc:  # the operator's client raises many kinds; all mean "not started"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(f"--cluster kubernetes: cannot create the cluster: {reason}") from None
    cluster.adapt(minimum=options.min_jobs, maximum=options.max_jobs)
    return cluster
