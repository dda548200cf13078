"""Dask's statistical profiler is off on the workers nucscale starts.

Every Dask worker samples its threads' stacks every 10 ms (``distributed.worker.profile``)
from its event-loop thread, holding the GIL while it walks the stacks, and keeps one call tree
per second for the last 1,000 seconds (``distributed.admin.low-level-log-length``) to show on
the dashboard. For a slide pipeline that is a cost without a reader:

- time: 8192² CMU-1 mosaic, 2 workers, default U-Net, interleaved runs of one code on the
  2-core machine: slide wall 37.4 / 37.4 s with the profiler, 34.3 / 36.0 s without (-6 %).
- memory: the trees are Python dicts (``{count, children, identifier, description}``) that
  grow with the run for its first 1,000 s: after one 8192² slide they were 4,200-4,600 of
  a worker's 36,000 dicts. They and the task states finalize used to hold
  (:mod:`nucscale.pipeline._graph`) were the Python objects that grew through a 40,000² run
  (293k → 473k per worker), and with them the peak memory; with both gone, a 16384² run's
  objects per worker stay at 284k-288k.

Set ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=True`` (or the Dask configuration key) to have
it back: a value in the environment wins over nucscale's default.
"""

from __future__ import annotations

import os

#: The environment variable that carries Dask's setting into worker processes and jobs.
PROFILE_ENV = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"


def profiler_config() -> dict[str, object]:
    """Dask configuration for workers this process starts: the profiler off, unless the
    environment says otherwise."""
    if PROFILE_ENV in os.environ:
        return {}
    return {"distributed.worker.profile.enabled": False}


def profiler_env() -> dict[str, str]:
    """Environment for worker jobs and pods: the profiler off unless set here already."""
    return {PROFILE_ENV: os.environ.get(PROFILE_ENV, "False")}
