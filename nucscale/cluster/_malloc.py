"""Keep freed buffers in a worker's heap while a task runs; hand them back once the task ends.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``): glibc then hands freed memory back to the kernel as
soon as 64 KiB sit free at the top of a heap. A network's forward allocates and frees
megabyte-sized activations for every batch, post-processing and features whole-window arrays,
so each of them can come back as fresh pages, faulted and zeroed by the kernel again. The same
13 tasks of the 8192² CMU-1 mosaic in one worker-like thread (``benchmarks/worker_malloc.py``):
79 s with Dask's setting (8.5 M page faults, 41 s in the kernel), 47 s with this module's
(0.8 M faults, 11 s). In a real worker the old trim fires only when the freed buffers sit at a
heap's top, which other threads' small allocations often prevent: whole runs showed it in
some (112 s, 95 s in the kernel) and not in others.

:func:`steady_malloc` sets glibc's trim threshold to :data:`TRIM_THRESHOLD` (freed memory stays
until that much is free at a heap's top) and fixes the mmap threshold at :data:`MMAP_THRESHOLD`
(blocks below it come from the heaps and are reused; larger ones, such as a whole window's int64
labels, are still mapped and returned when freed, so a worker does not keep its largest
temporary arrays). Between tasks, :func:`release_free_memory` hands free pages back
(``malloc_trim(0)``, once per task instead of after every freed buffer): a worker's peak memory
is then one task's working set, not that plus whatever its heaps fragmented into over the run
(about 2 s of the 47 above; 0.1 GiB less peak RSS per worker on the 8192² mosaic). Not all of
them: glibc's ``malloc_trim`` releases the free chunks of every arena but shrinks the top of
the main one only; the second arena's top (Zarr's and the engine's threads allocate there) is
cut back only when a free there leaves more than :data:`TRIM_THRESHOLD` on top. Measured in one
process running the 8192² mosaic's 16 instance tasks four times over with the workers'
settings (``mallinfo2``, ``/proc/self/smaps_rollup``): 0.128 GiB in use, the second arena 67 MB
of which 82 kB in use, anonymous memory flat at 0.27 GiB from the third pass; with glibc's
default arena count (one per thread, up to 8 per core) seven thread arenas held 42-65 MB each
with under 60 kB in use, and anonymous memory climbed 0.47 -> 0.53 GiB over four passes.
:class:`SteadyMalloc` does both on every worker, whoever started it (``mallopt`` works at run
time, so no environment has to reach the worker's start). Not glibc (macOS, musl): nothing to
do.

Workers also run with at most two malloc arenas (:data:`ARENA_MAX`, ``MALLOC_ARENA_MAX``):
glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in one
arena is never reused by another thread's, so a worker's task thread, Zarr's I/O thread and the
engine's batch thread grew separate heaps whose peaks added up. On the 16384² mosaic (2
workers, ``benchmarks/timeline.py --rss``) the worker's high-water mark of resident memory was
1,161-1,168 MiB with glibc's default against 880-886 MiB on the 4096² one, rising through the
run as instance tasks raised it (27 of them); with one arena 827-856 MiB. One arena made the
threads wait for each other's allocations: whole runs of the 16384² mosaic, interleaved
(``MALLOC_ARENA_MAX=N python benchmarks/pipeline.py --sizes 16384``): one arena 171.6 / 187.7 s,
peak 0.80 / 0.86 GiB, 85 / 86 s in the kernel; two 152.2 / 164.1 s, peak 0.86 / 0.82 GiB, 62 /
69 s. glibc reads it only at a process's start, so it reaches local workers through Dask's
``distributed.nanny.pre-spawn-environ`` (:func:`worker_environ`), batch jobs through their
script, containers through the image.

Tried and not kept as the default: torch's buffers on transparent huge pages
(``THP_MEM_ALLOC_ENABLE=1``, torch >= 2.2: buffers of 2 MiB and more aligned to 2 MiB and advised
onto huge pages, a fault per 2 MiB). Most of a replayed worker's page faults come from the
network (torch allocates every activation afresh; the U-Net's concatenations alone took 45 % of
them, ``perf record -e page-faults``; the decoders no longer concatenate,
:func:`nucscale.models.unet.join_skips`: the replay's faults 0.58-0.59 M -> 0.30-0.31 M). In
one worker-like thread (``benchmarks/worker_malloc.py --settings per_task,per_task_huge``, 2-core
AMD EPYC VM, two runs each) the variable cut the 13 tasks from 13.3-13.9 to 11.2-11.3 s
(1.7-1.9 M -> 0.26 M faults, 3.1-3.4 -> 1.35 s in the kernel; glibc's ``glibc.malloc.hugetlb=1``
on top gained nothing).
Whole runs (``benchmarks/pipeline.py``, 2 workers, one run each, d8db59d against 472682b):
4096² 8.6 / 8.0 s, 16384² 66.6 / 71.5 s, 40,000² **377.5 / 451.0 s** (user CPU 609 / 712 s,
kernel 84 / 118 s: fewer TLB misses as well as fewer faults); 8192² within noise (three runs
each, 1 / 2 workers 31.4 / 18.7 s against 30.2 / 18.4). But the peak per worker grows with the
slide: 0.565 / 0.619 / 0.687 GiB against 0.555 / 0.582 / 0.614 (+22 % from 4096² to 40,000²
against +11 %; huge pages are resident whole). Against issue 17's memory target it stays off;
a user who prefers the speed exports the variable (local workers inherit it; batch jobs and pods
need it in their environment).

Hand-written because no maintained library sets allocator parameters; it is one ``mallopt``
call per parameter, and one ``malloc_trim`` per task, through ``ctypes``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

from distributed import WorkerPlugin

#: Free bytes a heap keeps at its top before glibc trims it (Dask's default: 64 KiB).
TRIM_THRESHOLD = 64 * 2**20
#: Blocks of this size and larger are mapped on their own and unmapped when freed; glibc's
#: largest allowed value on 64-bit systems.
MMAP_THRESHOLD = 32 * 2**20

#: malloc arenas per worker process (glibc's default: 8 per core).
ARENA_MAX = 2

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3

#: What :func:`steady_malloc` set in this process (empty until it ran, or where it cannot).
APPLIED: dict[str, int] = {}


#: pyarrow's variable for its default memory pool (``system``, ``mimalloc``, ``jemalloc``).
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def worker_environ() -> dict[str, object]:
    """Dask configuration that sets :data:`ARENA_MAX` and Arrow's ``system`` pool
    (:func:`arrow_system_pool`) in the environment of the worker processes a nanny of this
    process spawns (a value the user exported wins)."""
    spawn = "distributed.nanny.pre-spawn-environ"
    return {f"{spawn}.MALLOC_ARENA_MAX": ARENA_MAX, f"{spawn}.{ARROW_POOL_ENV}": "system"}


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """This process's C library on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def steady_malloc() -> dict[str, int]:
    """Set glibc's trim and mmap thresholds in this process; returns what was set (empty
    where the C library is not glibc)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)  # musl has none
    if mallopt is None:
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    wanted = {"trim_threshold": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
              "mmap_threshold": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD)}  # fmt: skip
    for name, (param, value) in wanted.items():
        if mallopt(param, value) == 1:  # 1: success
            APPLIED[name] = value
    return dict(APPLIED)


def release_free_memory() -> bool:
    """Return the free pages of every heap to the kernel (``malloc_trim(0)``); False where the
    C library has no such call."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def arrow_system_pool() -> str:
    """Make the C library's allocator pyarrow's default pool in this process, unless the user
    chose one (:data:`ARROW_POOL_ENV`); returns the pool's backend name.

    pyarrow's default, mimalloc, keeps what its threads freed: the finalisation of the 16384²
    mosaic (slide summary, label pyramid and nucleus table: 64 fragments, 74,172 nuclei, one
    process, two malloc arenas) grew anonymous memory by 216 MiB with it, by 70 with glibc's
    (whose free pages :func:`release_free_memory` hands back), while pyarrow's own accounting
    never saw more than 9.3 MiB allocated at once: high-water 571 -> 523 MiB. A worker's peak
    at 40,000² was this finalisation (0.742 GiB against 0.67-0.68 through the tiles).

    This call sets the pool pyarrow's functions use; Arrow's C++ code also allocates from its
    own default pool, which it chooses from :data:`ARROW_POOL_ENV` once, when pyarrow loads.
    Workers set up here after their start kept mimalloc there: after an 8192² run each worker
    held a 1 GiB mimalloc reservation with 18-63 MiB resident. Workers a nanny of nucscale
    spawns therefore get the variable from their start (:func:`worker_environ`; batch jobs and
    pods from their environment): the reservation is gone, and the peak per worker of 2-worker
    runs fell 0.632 -> 0.601 GiB at 4096², 0.676 -> 0.662 at 16384² (one run each, same hour).
    """
    import pyarrow as pa

    if ARROW_POOL_ENV not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())
    return pa.default_memory_pool().backend_name


class SteadyMalloc(WorkerPlugin):
    """Applies :func:`steady_malloc` and :func:`arrow_system_pool` in each worker process when
    it joins, and :func:`release_free_memory` after each task it runs."""

    name = "nucscale-steady-malloc"

    def setup(self, worker: object) -> None:
        steady_malloc()
        arrow_system_pool()

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        """After each task, what its arrays left free goes back to the kernel."""
        if start == "executing":
            release_free_memory()
