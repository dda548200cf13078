"""Benchmark: a worker's tasks under Dask's allocator settings and under nucscale's.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; nucscale's worker plugin
(:mod:`nucscale.cluster._malloc`) raises it to 64 MiB, fixes the mmap threshold and hands free
pages back once per task. This runs the same tasks of a real slide (the forward of the tiles in
the first 3x3 block of the 8192² CMU-1 mosaic, then the instances of the first 2x2) in one
thread of a fresh process, the way a single-threaded worker runs them, once per setting:

- ``dask``: glibc with Dask's ``MALLOC_TRIM_THRESHOLD_=65536``;
- ``kept``: :func:`steady_malloc` only;
- ``per_task``: :func:`steady_malloc` and :func:`release_free_memory` after each task (what the
  plugin does);
- ``pooled``: nothing handed back at all (no mmap for large blocks, a 1 GiB trim threshold, no
  release): the fewest page faults, at the price of the process keeping its largest working set
  and whatever its heaps fragment into;
- ``per_task_huge``: ``per_task`` with torch's CPU buffers of 2 MiB and more on transparent
  huge pages (torch's ``THP_MEM_ALLOC_ENABLE=1``): a page fault per 2 MiB of the network's
  activations instead of per 4 KiB. Tried as the workers' default and not kept: see
  :mod:`nucscale.cluster._malloc`.

Every setting but ``per_task_huge`` runs without torch's huge pages (the variable removed).

Printed per setting: wall, user and kernel CPU seconds, minor page faults and peak RSS of the
process. Then ``refault``: seconds to write 1 GiB of freshly allocated memory right after
another 1 GiB was freed, and after the same freed memory sat idle for a few seconds. On a
virtual machine whose balloon driver reports free pages to the host (virtio-balloon free page
reporting, as here), memory freed and left idle for seconds can go back to the host and cost
a host fault on the next touch: what makes every page a worker hands back dear.

    python benchmarks/worker_malloc.py [--size 8192] [--settings per_task,per_task_huge]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mosaic import make_mosaic

SETTINGS = ("dask", "kept", "per_task", "pooled", "per_task_huge")
#: torch's variable that puts its CPU buffers of 2 MiB and more on transparent huge pages
#: (torch >= 2.2, read at its first allocation).
TORCH_THP_ENV = "THP_MEM_ALLOC_ENABLE"
_M_MMAP_MAX = -4  # glibc's malloc.h


def _tasks(slide: Path, setting: str, out: Path) -> dict[str, float]:
    """Run the tasks in a thread under ``setting``; the process's resource use."""
    from nucscale.cluster._malloc import release_free_memory, steady_malloc

    if setting != "dask":
        steady_malloc()
    if setting == "pooled":
        from nucscale.cluster._malloc import _M_TRIM_THRESHOLD, _libc

        libc = _libc()
        assert libc is not None, "pooled needs glibc"
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
    from nucscale.config import Settings
    from nucscale.pipeline import SlideInput, make_plan
    from nucscale.pipeline._tasks import forward_tile, ingest_tile, instances_tile

    plan = make_plan(SlideInput(str(slide), "m"), Settings(), str(out), "k")
    for t in plan.ingest_tiles():
        ingest_tile(plan, *t)
    todo = [(forward_tile, t) for t in plan.forward_tiles() if max(t) < 3]
    todo += [(instances_tile, t) for t in ((0, 0), (0, 1), (1, 0), (1, 1))]
    res: dict[str, float] = {}

    def work() -> None:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for fn, t in todo:
            fn(plan, *t)
            if setting.startswith("per_task"):
                release_free_memory()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        res.update(
            wall_s=round(time.perf_counter() - t0, 2),
            user_s=round(r1.ru_utime - r0.ru_utime, 2),
            system_s=round(r1.ru_stime - r0.ru_stime, 2),
            minor_faults=r1.ru_minflt - r0.ru_minflt,
            peak_rss_gib=round(r1.ru_maxrss / 2**20, 3),
            tasks=len(todo),
        )

    th = threading.Thread(target=work)  # a worker's task thread: not the main arena
    th.start()
    th.join()
    return res


def refault(idle_s: float, gib: int = 1) -> float:
    """Seconds to write ``gib`` GiB of fresh memory after as much was freed and sat idle for
    ``idle_s`` seconds (numpy's own huge-page advice off: 4 KiB faults, as most of a worker's
    allocations get)."""
    import numpy as np

    np._core.multiarray._set_madvise_hugepage(False)  # type: ignore[attr-defined]  # private
    n = gib * 2**27
    np.ones(n)  # touched, then freed (unmapped) at once
    time.sleep(idle_s)
    t0 = time.perf_counter()
    np.ones(n)
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--mosaics", type=Path, default=Path("mosaics"))
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, in order")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    slide = make_mosaic(args.mosaics, args.size)
    if args.child:
        out = Path(tempfile.mkdtemp())
        try:
            print(json.dumps(_tasks(slide, args.child, out / "out")))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return
    record: dict[str, object] = {"name": "worker_malloc", "size": args.size}
    for setting in args.settings.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as Dask's nanny sets it
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
        env.pop(TORCH_THP_ENV, None)
        if setting == "dask":
            env["MALLOC_TRIM_THRESHOLD_"] = "65536"
        if setting == "per_task_huge":
            env[TORCH_THP_ENV] = "1"
        cmd = [sys.executable, __file__, "--size", str(args.size), "--mosaics",
               str(args.mosaics), "--child", setting]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        record[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    refault(0)  # the first touch of memory the host never backed is dearer still
    record["refault_1gib_s"] = {f"after_{s}s_idle": refault(s) for s in (0, 5, 10)}
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
