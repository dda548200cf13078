"""Benchmark: the ingest stage's reader vs a plain OpenSlide ``read_region`` loop; JSON lines.

Same slide, same 1024 px tiles at level 0, one process, one thread:

- ``openslide_loop``: ``OpenSlide(path).read_region((x, y), 0, (w, h))`` converted to RGB numpy
  (what most pipelines' tilers do);
- ``nucscale_read``: ``read_analysis_region`` (the reader behind the ingest task: cached
  ``Slide`` handle per process, backend picked by format);
- ``nucscale_ingest``: ``read_analysis_region`` + writing the tile into the Zarr tile store
  (the whole ingest task).

    python benchmarks/reader.py [SLIDE ...]   # default: CMU-1 SVS and the 8000 px mosaic
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openslide

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mosaic import CMU1, make_mosaic

from nucscale.io import open_slide
from nucscale.tiling import (
    Box,
    LevelChoice,
    create_tile_store,
    read_analysis_region,
    write_tile,
)

TILE = 1024


def boxes(w: int, h: int) -> list[Box]:
    return [
        Box(x, y, min(x + TILE, w), min(y + TILE, h))
        for y in range(0, h, TILE)
        for x in range(0, w, TILE)
    ]


def bench(path: Path) -> None:
    with open_slide(path) as s:
        w, h = s.dimensions
        backend = s.backend
    tiles = boxes(w, h)
    mp = w * h / 1e6
    results: dict[str, float] = {}

    t0 = time.perf_counter()
    slide = openslide.OpenSlide(str(path))
    for b in tiles:
        np.asarray(slide.read_region((b.x0, b.y0), 0, (b.width, b.height)).convert("RGB"))
    slide.close()
    results["openslide_loop"] = time.perf_counter() - t0

    choice = LevelChoice(level=0, factor=1.0, mpp=0.5, width=w, height=h)
    t0 = time.perf_counter()
    for b in tiles:
        read_analysis_region(str(path), choice, b)
    results["nucscale_read"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "tiles.zarr"
        create_tile_store(store, (h, w), TILE, {})
        t0 = time.perf_counter()
        for b in tiles:
            write_tile(store, b, read_analysis_region(str(path), choice, b))
        results["nucscale_ingest"] = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "name": "reader",
                "slide": path.name,
                "backend": backend,
                "megapixels": round(mp, 1),
                "tiles": len(tiles),
                "tile": TILE,
                **{f"{k}_mp_per_s": round(mp / v, 1) for k, v in results.items()},
                "ratio_read_vs_openslide": round(
                    results["openslide_loop"] / results["nucscale_read"], 2
                ),
                "ratio_ingest_vs_openslide": round(
                    results["openslide_loop"] / results["nucscale_ingest"], 2
                ),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slides", nargs="*", type=Path)
    ap.add_argument("--mosaics", type=Path, default=Path("mosaics"))
    args = ap.parse_args()
    for path in args.slides or [CMU1, make_mosaic(args.mosaics, 8000)]:
        bench(path)


if __name__ == "__main__":
    main()
