"""Getting a Dask client: a local cluster or an existing scheduler."""

from nucscale.cluster._client import cpu_workers, default_workers, get_client, gpu_workers

__all__ = ["cpu_workers", "default_workers", "get_client", "gpu_workers"]
