"""Benchmark: exports, query and report on a slide with about a million nuclei; JSON lines.

Builds a synthetic results folder whose one slide holds the nuclei of a real CMU-1 run
(``nucscale run --model baseline``, ~2,400 nuclei) repeated on a grid of shifted copies, one row
group per copy, ``--copies`` of them (default 420: ~1,000,000 nuclei). Then times each
``nucscale export`` format and a ``nucscale query`` aggregate, each in a fresh process whose
peak resident memory (ru_maxrss of that child) is reported: the exports stream one row group
at a time, so their memory must not grow with the slide.

    python benchmarks/outputs.py [--copies 420]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from nucscale.features import GEOMETRY
from nucscale.store import (
    ManifestRow,
    nuclei_path,
    read_metadata,
    write_manifest,
    write_nuclei,
    write_slides_table,
)

REPO = Path(__file__).resolve().parents[1]
SLIDE = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"


def _child(args: list[str]) -> tuple[float, float]:
    """Run ``python -m nucscale ARGS``; (seconds, peak RSS of that child in MiB, from wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nucscale", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"nucscale {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def build(out: Path, copies: int) -> int:
    """A results folder with one slide of ``copies`` shifted copies of the CMU-1 nuclei."""
    run = out.parent / "cmu1"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nucscale",
            "run",
            str(SLIDE),
            "--out",
            str(run),
            "--model",
            "baseline",
            "--dashboard",
            ":0",
        ],
        check=True,
        capture_output=True,
    )
    src = nuclei_path(run, "CMU-1-Small-Region")
    base, meta = pq.read_table(src), read_metadata(src)
    side = int(np.ceil(np.sqrt(copies)))
    w, h = 2220, 2967

    def shifted(k: int) -> pa.Table:
        dx, dy = (k % side) * w, (k // side) * h
        t = base
        for c, d in (
            ("centroid_x", dx),
            ("centroid_y", dy),
            ("bbox_x0", dx),
            ("bbox_x1", dx),
            ("bbox_y0", dy),
            ("bbox_y1", dy),
        ):
            t = t.set_column(t.schema.get_field_index(c), c, pc.add(t.column(c), d))
        ids = pc.add(t.column("nucleus_id"), k << 40)
        t = t.set_column(0, "nucleus_id", ids)
        geo = shapely.transform(
            shapely.from_wkb(t.column(GEOMETRY).to_numpy(zero_copy_only=False)),
            lambda xy: xy + np.array([dx, dy]),
        )
        return t.set_column(
            t.schema.get_field_index(GEOMETRY), GEOMETRY, pa.array(shapely.to_wkb(geo), pa.binary())
        )

    n = write_nuclei(nuclei_path(out, "big"), (shifted(k) for k in range(copies)), meta)
    write_manifest(out, [ManifestRow("big", str(SLIDE), "done", nuclei=n, tissue_mm2=1.0)])
    write_slides_table(out, [ManifestRow("big", str(SLIDE), "done", nuclei=n, tissue_mm2=1.0)])
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=420)
    args = ap.parse_args()
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        n = build(out, args.copies)
        size = nuclei_path(out, "big").stat().st_size
        print(
            json.dumps(
                {
                    "name": "outputs.build",
                    "nuclei": n,
                    "table_mib": round(size / 2**20, 1),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "machine": machine,
                }
            )
        )
        for fmt in ("qupath-geojson", "hovernet-json", "csv"):
            seconds, rss = _child(["export", str(out), "--format", fmt])
            ext = {"qupath-geojson": "geojson", "hovernet-json": "json", "csv": "csv"}[fmt]
            mib = (out / "exports" / f"big.{ext}").stat().st_size / 2**20
            print(
                json.dumps(
                    {
                        "name": f"outputs.export.{fmt}",
                        "nuclei": n,
                        "seconds": round(seconds, 1),
                        "nuclei_per_s": round(n / seconds),
                        "file_mib": round(mib),
                        "peak_rss_mib": round(rss),
                    }
                )
            )
        sql = "SELECT type_name, count(*), median(area), avg(eccentricity) FROM nuclei GROUP BY ALL"
        seconds, rss = _child(["query", str(out), sql])
        print(
            json.dumps(
                {
                    "name": "outputs.query",
                    "nuclei": n,
                    "seconds": round(seconds, 2),
                    "peak_rss_mib": round(rss),
                }
            )
        )


if __name__ == "__main__":
    main()
