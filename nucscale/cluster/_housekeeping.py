"""Dask's housekeeping on the workers nucscale starts: no statistical profiler, fewer wake-ups.

Profiler. Every Dask worker samples its threads' stacks every 10 ms (``distributed.worker.profile``)
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

Wake-ups. Every Dask server (scheduler, nanny, worker) wakes its event loop every 20 ms to time
it (``distributed.admin.tick.interval``), and nannies and workers read the worker's memory every
100 ms (``distributed.worker.memory.monitor-interval``). An idle local cluster of two workers
spent 0.041 cores in the client's loop (scheduler, nannies) and 0.029 in each worker's
(per-thread CPU time over 10 s, 2-core machine): 5 % of the machine. Every 100 ms and 250 ms:
0.016 and 0.006. An 8192² run, 2 workers, interleaved: 64.2 / 64.4 CPU-seconds in all processes
with Dask's defaults, 61.6 / 63.4 with these. A loop blocked for longer than
``distributed.admin.tick.limit`` (3 s) is still reported; a worker's memory is still checked
four times a second against its pause and terminate thresholds.

System monitor. Every Dask server (the scheduler, each nanny, each worker) reads the host's and
its process's CPU, memory, file descriptors, disk and network counters every 500 ms
(``distributed.admin.system-monitor.interval``) for the dashboard's plots: 4.8 ms a reading on
this VM (cProfile of the client's loop through a 4096² run: 117 readings, 0.56 s of the loop's
2.6 s busy), 0.05 cores for a local cluster of two workers. Every 2 s: a quarter of that. The
workers' memory limits do not use it (they read the process's memory every 250 ms, above).

Each setting is a Dask configuration key; its environment variable (``DASK_...``), where the user
set it, wins: ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=True`` has the profiler back.
"""

from __future__ import annotations

import os

#: Dask configuration of the workers (and, locally, the scheduler and nannies) nucscale starts.
SETTINGS: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "100ms",
    "distributed.worker.memory.monitor-interval": "250ms",
    "distributed.admin.system-monitor.interval": "2s",
}


def env_name(key: str) -> str:
    """The environment variable Dask reads for configuration ``key``."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


#: The environment variable that carries the profiler's setting into worker processes and jobs.
PROFILE_ENV = env_name("distributed.worker.profile.enabled")


def housekeeping_config() -> dict[str, object]:
    """Dask configuration for the cluster this process starts: :data:`SETTINGS`, less those
    the environment sets."""
    return {k: v for k, v in SETTINGS.items() if env_name(k) not in os.environ}


def housekeeping_env() -> dict[str, str]:
    """Environment for worker jobs and pods: :data:`SETTINGS`, a value set here already wins."""
    return {env_name(k): os.environ.get(env_name(k), str(v)) for k, v in SETTINGS.items()}
