"""Benchmark: where one slide's wall time goes, from Dask's task stream; one JSON line.

``benchmarks/pipeline.py`` gives the CPU-seconds of each stage summed over tasks; this gives
their placement in time. The mosaic (benchmarks/mosaic.py) is processed by ``run_cohort`` in this
process under ``distributed.get_task_stream``, on the local cluster ``nucscale run`` starts (its
workers forked from a server that loaded their libraries, with nucscale's worker environment and
plugins); reported, in seconds:

- ``cluster_start_s`` (the local cluster, every worker up) and ``run_s`` (the cohort call);
- per stage (``ingest``, ``forward``, ``instances``, ``paint``, ``finalize``...): tasks, summed
  compute, first start and last end after the cohort call began;
- per worker kind (GPU worker: the ``GPU`` resource; CPU workers): compute summed, and busy
  share of ``run_s`` (per worker, averaged);
- ``first_task_s`` (submission to the first task's start: planning and scheduling) and
  ``after_last_task_s`` (last task's end to the call's return: manifest, cohort table);
- ``task_stages_s``: the stage seconds that segment, forward and instance tasks report
  (``TileStats.stages``), summed per task kind: what a task's compute is made of (a forward
  task's ``read_s`` is its input window, ``model_s`` the engine around the network (batching,
  copies, the network), ``fragment_s`` writing its maps);
- with ``--rss``: which tasks raised their worker's high-water mark of resident memory
  (``getrusage``'s ``ru_maxrss`` before and after each task): per stage, how many did and by
  how much in all, and each worker's final high-water mark. A peak that grows with the slide
  shows here as the stage that keeps raising it.

    python benchmarks/timeline.py --size 8192 --workers 2 [--tile 1024] [--gpu] [--model unet]

With ``--gpu`` the cluster is ``nucscale run --gpu``'s (:func:`nucscale.cluster.gpu_cluster`);
``--workers`` counts its CPU workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mosaic import make_mosaic


class RssLog(WorkerPlugin):
    """Records, for each task a worker runs, its process's high-water mark of resident memory
    before and after (MiB) and its current RSS after; :func:`rss_rows` reads them back."""

    name = "benchmark-rss-log"

    def setup(self, worker: Any) -> None:
        self.rows: list[tuple[str, float, float, float]] = []
        self.before: dict[str, float] = {}
        worker.benchmark_rss_rows = self.rows

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        import resource

        import psutil

        high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        if finish == "executing":
            self.before[str(key)] = high
        elif start == "executing" and str(key) in self.before:
            now = psutil.Process().memory_info().rss / 2**20
            self.rows.append((str(key), self.before.pop(str(key)), high, now))


class StageLog(WorkerPlugin):
    """Sums, per task kind, the stage seconds of the ``TileStats`` its tasks return."""

    name = "benchmark-stage-log"

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.sums: dict[str, list[float]] = {}
        worker.benchmark_stage_sums = self.sums

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if start != "executing" or finish != "memory":
            return
        kind = str(key).split("-", 1)[0]
        stages = getattr(self.worker.data.get(key), "stages", None)
        if stages and kind in ("segment", "forward", "instances"):
            acc = self.sums.setdefault(kind, [0.0] * len(stages))
            for i, v in enumerate(stages):
                acc[i] += v


def stage_sums(dask_worker: Any) -> dict[str, list[float]]:
    return dict(getattr(dask_worker, "benchmark_stage_sums", {}))


def stage_summary(per_worker: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    from nucscale.pipeline._tasks import SEGMENT_STAGES

    total: dict[str, list[float]] = {}
    for sums in per_worker.values():
        for kind, values in sums.items():
            acc = total.setdefault(kind, [0.0] * len(values))
            total[kind] = [a + v for a, v in zip(acc, values, strict=True)]
    return {"task_stages_s": {
        kind: {n: round(v, 2) for n, v in zip(SEGMENT_STAGES, values, strict=True)}
        for kind, values in total.items()}}  # fmt: skip


def rss_rows(dask_worker: Any) -> list[tuple[str, float, float, float]]:
    return list(getattr(dask_worker, "benchmark_rss_rows", []))


def rss_summary(rows: dict[str, list[tuple[str, float, float, float]]]) -> dict[str, Any]:
    """Per stage: tasks that raised their worker's high-water mark, and by how much (MiB)."""
    raised: dict[str, dict[str, float]] = {}
    for worker_rows in rows.values():
        for key, before, after, _ in worker_rows:
            if after > before:
                st = raised.setdefault(key.split("-", 1)[0], {"tasks": 0, "mib": 0.0})
                st["tasks"] += 1
                st["mib"] += after - before
    return {
        "raised_high_water": {k: {"tasks": v["tasks"], "mib": round(v["mib"], 1)}
                              for k, v in raised.items()},
        "worker_high_water_mib": sorted(
            round(max((r[2] for r in w), default=0.0), 1) for w in rows.values()
        ),
    }  # fmt: skip


def summarise(records: list[dict[str, Any]], gpu_workers: set[str], t0: float) -> dict:
    """Stage and worker-kind summaries of task-stream ``records`` (times relative to ``t0``)."""
    stages: dict[str, dict[str, float]] = {}
    kinds: dict[str, float] = defaultdict(float)
    for rec in records:
        compute = [s for s in rec["startstops"] if s["action"] == "compute"]
        if not compute:
            continue
        start = min(s["start"] for s in compute) - t0
        stop = max(s["stop"] for s in compute) - t0
        busy = sum(s["stop"] - s["start"] for s in compute)
        stage = str(rec["key"]).split("-", 1)[0]
        st = stages.setdefault(stage, {"tasks": 0, "compute_s": 0.0, "first_start_s": start,
                                       "last_end_s": stop})  # fmt: skip
        st["tasks"] += 1
        st["compute_s"] += busy
        st["first_start_s"] = min(st["first_start_s"], start)
        st["last_end_s"] = max(st["last_end_s"], stop)
        kinds["gpu" if rec["worker"] in gpu_workers else "cpu"] += busy
    rounded = {k: {n: round(v, 2) for n, v in s.items()} for k, s in stages.items()}
    return {
        "stages": rounded,
        "compute_s_by_worker_kind": {k: round(v, 2) for k, v in kinds.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--weights", default=None, help="checkpoint (--model hovernet)")
    ap.add_argument("--gpu-tasks", type=int, default=1, help="forward tasks at once per GPU")
    ap.add_argument("--rss", action="store_true", help="which tasks raise the memory peak")
    ap.add_argument("--mosaics", type=Path, default=Path("mosaics"))
    args = ap.parse_args()

    from distributed import Client, get_task_stream

    from nucscale.cluster import get_client, gpu_cluster
    from nucscale.cluster._client import _prepare
    from nucscale.cluster._forks import start_fork_server
    from nucscale.config import Settings
    from nucscale.contracts import WORKER_MODULES
    from nucscale.pipeline import resolve_inputs, run_cohort

    if not args.gpu:  # as `nucscale run` does: CPU workers forked with their libraries loaded
        start_fork_server(WORKER_MODULES)
    slide = make_mosaic(args.mosaics, args.size)
    settings = Settings(segmenter=args.model, tile=args.tile, weights=args.weights)
    slides, rejected = resolve_inputs([str(slide)])
    t_start = time.perf_counter()
    gpus = 0
    with contextlib.ExitStack() as stack:
        if args.gpu:
            import torch

            gpus = torch.cuda.device_count()
            cluster = stack.enter_context(gpu_cluster(gpus, args.workers, dashboard_address=None,
                                                      gpu_tasks=args.gpu_tasks))  # fmt: skip
            client = stack.enter_context(Client(cluster))
            _prepare(client)
        else:  # the command's local cluster: its workers' environment and plugins
            client = stack.enter_context(get_client(workers=args.workers, dashboard_address=None))
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        client.wait_for_workers(args.workers + gpus)
        client.register_plugin(StageLog())
        if args.rss:
            client.register_plugin(RssLog())
        cluster_start = time.perf_counter() - t_start
        gpu = {a for a, w in client.scheduler_info()["workers"].items() if w.get("resources")}
        t0 = time.time()
        with get_task_stream(client) as stream:
            rows = run_cohort(client, slides, rejected, settings, Path(tmp) / "out")
        run_s = time.time() - t0
        memory = rss_summary(client.run(rss_rows)) if args.rss else {}
        task_stages = stage_summary(client.run(stage_sums))
    summary = summarise(stream.data, gpu, t0)
    ends = [s["last_end_s"] for s in summary["stages"].values()]
    starts = [s["first_start_s"] for s in summary["stages"].values()]
    busy = summary["compute_s_by_worker_kind"]
    print(
        json.dumps(
            {
                "name": "timeline",
                "size": args.size,
                "model": args.model,
                "tile": args.tile,
                "gpu": args.gpu,
                "cpu_workers": args.workers,
                "gpu_tasks": args.gpu_tasks if args.gpu else None,
                "status": rows[0].status,
                "nuclei": rows[0].nuclei,
                "cluster_start_s": round(cluster_start, 2),
                "run_s": round(run_s, 2),
                "first_task_s": round(min(starts), 2),
                "after_last_task_s": round(run_s - max(ends), 2),
                "cpu_worker_busy": round(busy.get("cpu", 0) / (args.workers * run_s), 3),
                # summed over the GPU worker's task threads: above 1 when forward tasks overlap
                "gpu_worker_busy": round(busy.get("gpu", 0) / run_s, 3) if gpu else None,
                **summary,
                **task_stages,
                **memory,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
