"""Benchmark: `nucscale run` on one slide; prints one JSON line.

Wall time of the whole command, peak resident memory summed over the process tree (client,
scheduler, workers: sampled every 0.1 s with psutil), nuclei count and throughput.

    python benchmarks/run_slide.py [SLIDE] [--workers N] [--tile N] [--model unet|baseline|...]

SLIDE defaults to ../shared/data/slides/CMU-1-Small-Region.svs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from nucscale.config import Settings
from nucscale.store import read_manifest

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slide", nargs="?", default=str(DEFAULT))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--model", default=None, help="segmenter (default: nucscale run's, unet)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [
            sys.executable,
            "-m",
            "nucscale",
            "run",
            args.slide,
            "--out",
            str(out),
            "--dashboard",
            ":0",
        ]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.tile:
            cmd += ["--tile", str(args.tile)]
        if args.model:
            cmd += ["--model", args.model]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, tree_rss(ps))
                time.sleep(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, err = proc.communicate()
        stop.set()
        th.join()
        wall = time.perf_counter() - t0
        rows = list(read_manifest(out).values()) if out.exists() else []
        nuclei = sum(r.nuclei or 0 for r in rows)
        mm2 = sum(r.tissue_mm2 or 0 for r in rows)
        parts = list((out / "nuclei").rglob("*.parquet")) if out.exists() else []
        n_rows = sum(pq.read_metadata(p).num_rows for p in parts)
        print(
            json.dumps(
                {
                    "benchmark": "run_slide",
                    "slide": Path(args.slide).name,
                    "model": args.model or Settings().segmenter,
                    "exit_code": proc.returncode,
                    "workers": args.workers or psutil.cpu_count(),
                    "tile": args.tile or "default",
                    "nuclei": nuclei,
                    "rows_written": n_rows,
                    "tissue_mm2": round(mm2, 3),
                    "wall_s": round(wall, 2),
                    "s_per_mm2": round(wall / mm2, 2) if mm2 else None,
                    "segment_s": round(sum(r.segment_s or 0 for r in rows), 2),
                    "peak_rss_mb": round(peak / 2**20, 1),
                    "stderr_tail": err.strip().splitlines()[-1:] if proc.returncode else [],
                }
            )
        )


if __name__ == "__main__":
    main()
