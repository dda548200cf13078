"""Local workers forked from a process that imported their libraries while the command started.

Dask's nanny starts each local worker with multiprocessing's ``spawn``: a fresh interpreter,
which then imports torch, scikit-image, the readers and the pipeline
(:class:`nucscale.cluster._warm.WarmImports`): 2.7-2.8 s on this 2-core machine, after the
command itself spent 2.3-3.0 s importing the same libraries for its checks; a slide waited for
the one and then the other. :func:`start_fork_server` starts multiprocessing's fork server as
the command starts, with the workers' environment, and the server imports those modules while
the command does its checks on the other core; the local cluster's nannies then fork their
workers from it (``distributed.worker.multiprocessing-method: forkserver``, :func:`fork_config`),
and the workers start with everything imported. (Until bbda530 the pipeline itself was not: the
preload ran inside ``nucscale.cluster``'s ``__init__`` and the pipeline's import failed on the
half-loaded package, so each worker still imported it, 0.6 s, when the cohort registered
``WarmImports``; the first plan now starts as the cluster is up.) ``benchmarks/pipeline.py``
interleaved with the spawning code (2832aef): 4096² mosaic, 1 worker, four pairs, 17.9-18.0 s
against 19.4-21.4 s, peak worker RSS 0.49-0.50 against 0.56-0.61 GiB; 8192², two pairs, 1 worker
56.6 / 57.1 s against 57.5 / 64.7 s, 2 workers 30.9 / 33.3 s against 34.2 / 35.8 s, peak worker
RSS 0.51-0.52 against 0.57-0.66 GiB (why a forked worker holds less was not looked into).
Outputs identical.

What a worker reads at its start is fixed when the server starts, not when the worker forks:
glibc's ``MALLOC_ARENA_MAX``, the threads of OpenMP, MKL and OpenBLAS (torch reads
``OMP_NUM_THREADS`` when it is imported), Arrow's default pool, Python's hash seed. The server
therefore starts with what a spawned worker would have: Dask's
``distributed.nanny.pre-spawn-environ`` with nucscale's (:func:`worker_environ`), and the threads
the workers will have (:func:`thread_env`). A cluster whose workers want another thread count
spawns them as before (:func:`fork_config` returns nothing), and so does the ``--gpu`` layout
(its CUDA workers have not been tried forked) and every cluster in a process that started no
server. The server is process-wide: only the ``nucscale`` command starts it (a library
caller's environment may change between runs; the server's would not), and stops it as it
ends (:func:`stop_fork_server`).

The server imports nothing that starts a thread except Arrow's jemalloc background thread,
which jemalloc's own fork handlers cover; Dask's own fork-server mode preloads pyarrow as well.
A module the server cannot import is skipped (:mod:`nucscale.cluster._fork_preload`; the task
that needs it raises the real error).

Hand-written because Dask starts a fork server only when its first worker starts, with the
environment of that moment and without the caller's modules; this is the standard library's
``set_forkserver_preload`` and ``ensure_running``, called earlier.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterable
from multiprocessing import forkserver

import dask

from nucscale.cluster._malloc import worker_environ

#: The environment variable that names the modules the server imports (comma-separated; read
#: by :mod:`nucscale.cluster._fork_preload`, which must not be imported from here: the package's
#: ``__init__`` imports this module, and the preload's imports, run while the package was still
#: loading, failed on a circular import for every module that imports ``nucscale.cluster``).
IMPORTS_ENV = "NUCSCALE_FORK_IMPORTS"
#: Dask's setting that picks how nannies start their worker processes.
METHOD = "distributed.worker.multiprocessing-method"
#: The variables that set a worker's kernel threads (OpenMP, MKL, OpenBLAS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: zarr's thread pool, which reads, writes, compresses and decompresses every chunk (default:
#: ``min(32, cores + 4)`` threads in each process, whatever cores the process was given).
ZARR_THREADS = "ZARR_THREADING__MAX_WORKERS"
#: Python's hash seed Dask's nanny gives every worker unless the environment names one.
DASK_HASH_SEED = "6640"

#: Threads per worker of the server this process started (empty: it started none).
_STARTED: list[int] = []


def thread_env(threads: int) -> dict[str, str]:
    """Environment giving a worker process ``threads`` threads for torch, OpenMP and BLAS
    kernels (Dask's nanny otherwise pins them to the worker's one task thread), and as many for
    zarr's pool (:data:`ZARR_THREADS`; a value the user exported wins: reads from a network
    filesystem may want more in flight).

    zarr's default pool (6 threads on 2 cores) decoded a worker's chunks on the core of the
    other worker's task. ``benchmarks/pipeline.py``, two interleaved rounds with the variable
    at 1 and unset: 8192² 2 workers 12.8 / 12.9 against 13.3 / 13.4 s, 1 worker 21.1 / 21.1
    against 21.5 / 21.4 s, kernel time 2.3-2.6 against 3.0-3.8 s; 16384² 2 workers 44.7 / 43.2
    against 45.8 / 45.4 s, peak per worker 0.46 against 0.48 GiB."""
    zarr_threads = os.environ.get(ZARR_THREADS, str(threads))
    return {**{name: str(threads) for name in THREAD_VARIABLES}, ZARR_THREADS: zarr_threads}


def worker_start_env(threads: int) -> dict[str, str]:
    """The environment a local nanny gives a worker it spawns with ``threads`` threads: Dask's
    ``pre-spawn-environ`` with nucscale's settings (a variable this process has wins, as in
    Dask), its hash seed, and the thread variables."""
    with dask.config.set(worker_environ()):  # a copy: leaving the block empties the dict read
        wanted = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    env = {k: os.environ.get(k, str(v)) for k, v in wanted.items() if v is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = DASK_HASH_SEED
    return {**env, **thread_env(threads)}


def start_fork_server(modules: Iterable[str], threads: int = 1) -> bool:
    """Start this process's fork server with the environment of workers that have
    ``threads`` threads, importing ``distributed`` and ``modules`` (in the server, while this
    process goes on; :mod:`nucscale.cluster._fork_preload`). Returns False off Linux (macOS's
    system libraries are not safe to fork once loaded; Windows has no fork) or where this
    process started one already."""
    if _STARTED or not sys.platform.startswith("linux"):
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["distributed", "nucscale.cluster._fork_preload"]
    )
    env = {**worker_start_env(threads), IMPORTS_ENV: ",".join(modules)}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        forkserver.ensure_running()  # the server inherits this environment
    finally:
        for k, v in before.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    _STARTED.append(threads)
    return True


def stop_fork_server() -> None:
    """End the server :func:`start_fork_server` started, at once (call it once the cluster
    that forked from it has closed: its workers are gone). Left alone, the server notices the
    command's exit and finalises its interpreter, torch and all: 0.9 s after the command had
    finished, holding the command's output open that long for whoever reads it (a pipe, a
    job's log, ``benchmarks/pipeline.py``). It holds nothing to clean up, so it gets SIGTERM,
    then multiprocessing's own stop (private, ``_stop``: CPython's since 3.8) reaps it and
    removes its socket. Later local clusters of this process spawn their workers."""
    if not _STARTED:
        return
    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()
    _STARTED.clear()


def fork_config(threads: int) -> dict[str, str]:
    """Dask configuration that has a local cluster's nannies fork workers with ``threads``
    threads from this process's server: empty unless :func:`start_fork_server` started one
    for that many."""
    return {METHOD: "forkserver"} if threads in _STARTED else {}
