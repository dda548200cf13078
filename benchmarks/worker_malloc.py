"""Benchmark: a worker's tasks under Dask's allocator settings and under nucscale's.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; nucscale's worker plugin
(:mod:`nucscale.cluster._malloc`) raises it to 64 MiB, fixes the mmap threshold and hands free
pages back once per task. This runs the same tasks of a real slide (the forward of the tiles in
the first 3x3 block of the 8192² CMU-1 mosaic, then the instances of the first 2x2) in one
thread of a fresh process, the way a single-threaded worker runs them, once per setting:

- ``dask``: glibc with Dask's ``MALLOC_TRIM_THRESHOLD_=65536``;
- ``kept``: :func:`steady_malloc` only;
- ``per_task``: :func:`steady_malloc` and :func:`release_free_memory` after each task (what the
  plugin does).

Printed per setting: wall, user and kernel CPU seconds and minor page faults of the process.
Page faults are what the setting changes; a fault costs more or less depending on the machine
(on this VM a page handed back is sometimes handed back to the host too).

    python benchmarks/worker_malloc.py [--size 8192]
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

SETTINGS = ("dask", "kept", "per_task")


def _tasks(slide: Path, setting: str, out: Path) -> dict[str, float]:
    """Run the tasks in a thread under ``setting``; the process's resource use."""
    from nucscale.cluster._malloc import release_free_memory, steady_malloc

    if setting != "dask":
        steady_malloc()
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
            if setting == "per_task":
                release_free_memory()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        res.update(
            wall_s=round(time.perf_counter() - t0, 2),
            user_s=round(r1.ru_utime - r0.ru_utime, 2),
            system_s=round(r1.ru_stime - r0.ru_stime, 2),
            minor_faults=r1.ru_minflt - r0.ru_minflt,
            tasks=len(todo),
        )

    th = threading.Thread(target=work)  # a worker's task thread: not the main arena
    th.start()
    th.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--mosaics", type=Path, default=Path("mosaics"))
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
    for setting in SETTINGS:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as Dask's nanny sets it
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
        if setting == "dask":
            env["MALLOC_TRIM_THRESHOLD_"] = "65536"
        cmd = [sys.executable, __file__, "--size", str(args.size), "--mosaics",
               str(args.mosaics), "--child", setting]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        record[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
