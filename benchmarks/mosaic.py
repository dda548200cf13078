"""Generate large benchmark slides: pyramidal OME-TIFF mosaics of the real CMU-1 region.

Neighbouring copies of CMU-1-Small-Region (2220 x 2967 px at 0.499 µm/px) are mirror images, so
the texture is real and there are no seams; the slide is cut to the requested size and
written tile by tile (JPEG q90, 256 px tiles, SubIFD pyramid), so a 40,000 px square slide
needs no more memory than a small one.

    python benchmarks/mosaic.py --size 8000 --out mosaics/    # -> mosaics/cmu1-mosaic-8000.ome.tif
    python benchmarks/mosaic.py --size 8000,20000,40000 --out mosaics/

Prints one JSON line per slide written. Slides already present are kept.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nucscale.io import open_slide, write_mosaic_tiff

REPO = Path(__file__).resolve().parents[1]
CMU1 = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
MPP = 0.499


def mosaic_path(out: Path, size: int) -> Path:
    return Path(out) / f"cmu1-mosaic-{size}.ome.tif"


def make_mosaic(out: Path, size: int, source: Path = CMU1) -> Path:
    """The ``size`` x ``size`` mosaic in ``out`` (written if absent)."""
    path = mosaic_path(out, size)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_slide(source) as s:
        rgb = s.read_region(0, 0, 0, *s.dimensions)
    tmp = path.with_name(path.name + ".part")
    write_mosaic_tiff(rgb, tmp, size, size, mpp=MPP)
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="8000", help="side(s) in px, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("mosaics"))
    args = ap.parse_args()
    for size in (int(v) for v in args.size.split(",")):
        t0 = time.perf_counter()
        path = make_mosaic(args.out, size)
        print(
            json.dumps(
                {
                    "name": "mosaic",
                    "size": size,
                    "path": str(path),
                    "mpp": MPP,
                    "mib": round(path.stat().st_size / 2**20, 1),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
