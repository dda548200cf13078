"""Workers that load their libraries when they join, all at once, not in their first task.

A worker imports what a task needs when the task arrives: torch, scikit-image, the readers and
the pipeline take 1.3-1.8 s on this 2-core machine. The first worker imports them for the slide's
plan (the slide waits either way); every other worker imports them in its first task, while the
first is already reading and running the network, so on a small cluster that import takes a
core from the slide's work (one worker in two, on two workers). :class:`WarmImports` imports a
given list of modules in every worker when it joins (``setup``, awaited by
``Client.register_plugin`` and by a worker's start): all workers load at once, before any task.

The modules are the caller's: :mod:`nucscale.pipeline` names what its tasks import. A module a
worker cannot import is skipped here (logged at debug level); the task that needs it raises
the real error in its place.

Hand-written: Dask's own preloads (``distributed.worker.preload``) need the setting to reach
every worker's start (an environment variable in batch jobs and pods); a plugin the client
registers reaches every kind of cluster the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterable

from distributed import WorkerPlugin

log = logging.getLogger(__name__)


def import_all(modules: Iterable[str]) -> None:
    """Import each module; one that cannot be imported is logged at debug level and skipped."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task that needs it reports it
            log.debug("could not import %s in advance: %s", name, exc)


class WarmImports(WorkerPlugin):
    """Imports :attr:`modules` in each worker process when it joins (in a thread: the worker's
    event loop keeps answering the scheduler)."""

    name = "nucscale-warm-imports"

    def __init__(self, modules: Iterable[str]) -> None:
        self.modules = tuple(modules)

    async def setup(self, worker: object) -> None:
        await asyncio.to_thread(import_all, self.modules)
