"""Benchmark: a cohort of many small slides on 2 workers; one JSON line.

Generates ``--slides`` small slides (default 1,000): ``--size``² crops (default 256) of the
real CMU-1-Small-Region level 0, written as PNG files (generated from real pixels; the pixel
size, 0.499 µm/px, is given in the cohort CSV's ``mpp`` column). Then runs
``nucscale run cohort.csv --workers 2`` in a fresh process while a sampler records the resident
memory of the client process every 0.1 s. Reported: wall time, wall time per slide, the
client's peak RSS and its RSS at 25 / 50 / 75 / 100 % of the run (flat when the cohort loop
keeps no per-slide state), the manifest's row count and statuses. ``--manifest-only`` times
just recording that many finished slides in the manifest, per-slide rewrites against batches.

    python benchmarks/cohort.py [--slides 1000] [--size 256] [--model unet]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from nucscale.io import open_slide
from nucscale.store import ManifestRow, ManifestWriter, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUCSCALE_SHARED_DATA", REPO.parent / "shared" / "data"))
SLIDE = SHARED / "slides" / "CMU-1-Small-Region.svs"
MIB = 2**20


def make_cohort(folder: Path, n: int, size: int) -> Path:
    """``n`` crops of CMU-1 (a raster over its tissue, wrapping) and ``cohort.csv``."""
    slide = open_slide(SLIDE)
    mpp = slide.mpp
    level = slide.levels[0]
    rgb = slide.read_region(0, 0, 0, level.width, level.height)
    xs = range(0, level.width - size, size // 2)
    ys = range(0, level.height - size, size // 2)
    spots = [(x, y) for y in ys for x in xs]
    rows = []
    for i in range(n):
        x, y = spots[i % len(spots)]
        path = folder / f"crop{i:05d}.png"
        Image.fromarray(np.ascontiguousarray(rgb[y : y + size, x : x + size])).save(path)
        rows.append({"path": str(path), "slide_id": f"crop{i:05d}", "mpp": mpp})
    cohort = folder / "cohort.csv"
    with cohort.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "slide_id", "mpp"])
        writer.writeheader()
        writer.writerows(rows)
    return cohort


class RssTrace:
    """RSS of one process every 0.1 s, with the time of each sample."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                rss = self.proc.memory_info().rss
                if rss:  # an exited process reads 0
                    self.samples.append((time.perf_counter() - t0, rss))
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, fraction: float) -> float:
        """RSS (MiB) of the sample nearest ``fraction`` of the traced time."""
        end = self.samples[-1][0]
        _, rss = min(self.samples, key=lambda s: abs(s[0] - fraction * end))
        return round(rss / MIB, 1)


def manifest_writes(n: int) -> dict[str, float]:
    """Seconds to record ``n`` finished slides one at a time: rewriting the whole manifest per
    slide (before batching) and with :class:`ManifestWriter` (what the cohort loop uses)."""
    rows = [ManifestRow(f"s{i:06d}", f"/slides/s{i:06d}.svs", "done", nuclei=i) for i in range(n)]
    times = {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        t0 = time.perf_counter()
        for row in rows:
            write_manifest(Path(a), [row])
        times["manifest_per_slide_rewrite_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        writer = ManifestWriter(Path(b))
        for row in rows:
            writer.add([row])
        writer.flush()
        times["manifest_batched_s"] = round(time.perf_counter() - t0, 2)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--manifest-only", action="store_true", help="only the manifest writes")
    args = ap.parse_args()
    if args.manifest_only:
        print(json.dumps({"name": "manifest", "slides": args.slides,
                          **manifest_writes(args.slides)}), flush=True)  # fmt: skip
        return
    with tempfile.TemporaryDirectory(prefix="nucscale-cohort-") as tmp:
        folder = Path(tmp)
        (folder / "slides").mkdir()
        cohort = make_cohort(folder / "slides", args.slides, args.size)
        out = folder / "out"
        cmd = [sys.executable, "-m", "nucscale", "run", str(cohort), "--out", str(out),
               "--workers", str(args.workers), "--model", args.model,
               "--dashboard", ":0"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
        trace = RssTrace(proc.pid)
        _, err = proc.communicate()
        wall = time.perf_counter() - t0
        trace.stop()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
        rows = read_manifest(out).values()
        slide_walls = sorted(r.wall_s or 0.0 for r in rows)
        print(
            json.dumps(
                {
                    "name": "cohort",
                    "slides": args.slides,
                    "size_px": args.size,
                    "model": args.model,
                    "workers": args.workers,
                    "wall_s": round(wall, 1),
                    "wall_s_per_slide": round(wall / args.slides, 3),
                    "slide_wall_s_median": round(slide_walls[len(slide_walls) // 2], 2),
                    "client_peak_rss_mib": round(max(s for _, s in trace.samples) / MIB, 1),
                    "client_rss_mib_at": {f"{q}%": trace.at(q / 100) for q in (25, 50, 75, 100)},
                    "manifest_rows": len(slide_walls),
                    "statuses": dict(Counter(r.status for r in rows)),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
