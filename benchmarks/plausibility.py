"""Benchmark: is what a model finds on a real H&E slide plausible? One JSON line, overlays.

Runs ``nucscale run SLIDE`` (default: the real CMU-1 region, default settings) exactly as a user
would, then measures over every nucleus of the table:

- ``small_frac``: area < 10 µm² (no real nucleus at 20x is that small);
- ``glass_frac``: the mean R, G and B of its pixels all above 200 (it lies on bare glass);
- ``eosin_frac``: haematoxylin optical density below eosin's (stroma, fibres, edges);
- count, median area and equivalent diameter, and the count inside each region below.

and draws the outlines over three fixed regions of CMU-1 (epithelium with its pale nuclei,
collagen-rich stroma, a tissue edge on glass) into ``--overlays DIR`` as
``<label>-<region>.png``, for looking at, side by side with another model's.

    python benchmarks/plausibility.py [SLIDE] [--model unet] [--weights W] [--label new]
        [--overlays DIR] [--keep OUT]
    python benchmarks/plausibility.py --pair before after --overlays DIR --to docs/overlays

``--pair A B`` runs nothing: it puts the overlays ``A-<region>.png`` and ``B-<region>.png`` of
DIR side by side, captioned, as ``cmu1-<region>.jpg`` in ``--to`` (the model card's pictures).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import shapely
from PIL import Image

from nucscale.io import open_slide
from nucscale.query import open_results
from nucscale.report._pictures import draw_outlines

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
#: CMU-1 regions (x0, y0, width, height) in level-0 pixels.
REGIONS = {
    "epithelium": (1000, 1200, 500, 400),
    "stroma": (700, 2000, 500, 400),
    "edge": (850, 150, 500, 400),
}
FIGURES_SQL = """
SELECT count(*) AS nuclei,
       avg((area < 10)::int) AS small_frac,
       avg((mean_r > 200 AND mean_g > 200 AND mean_b > 200)::int) AS glass_frac,
       avg((od_haematoxylin < od_eosin)::int) AS eosin_frac,
       median(area) AS median_area_um2,
       median(equivalent_diameter) AS median_diameter_um
FROM nuclei
"""


def run(slide: str, out: Path, model: str | None, weights: str | None, extra: list[str]) -> None:
    """``nucscale run SLIDE --out OUT`` in a subprocess, as a user types it."""
    cmd = [sys.executable, "-m", "nucscale", "run", slide, "--out", str(out), "--dashboard", ":0"]
    if model:
        cmd += ["--model", model]
    if weights:
        cmd += ["--weights", weights]
    done = subprocess.run(cmd + extra, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nucscale run failed ({done.returncode}):\n{done.stderr[-2000:]}")


def figures(out: Path) -> dict[str, float]:
    """The plausibility figures of every nucleus in ``out`` (see module docstring)."""
    res = open_results(out)
    row = res.sql(FIGURES_SQL).fetchone()
    assert row is not None
    names = ("nuclei", "small_frac", "glass_frac", "eosin_frac", "median_area_um2")
    values = dict(zip((*names, "median_diameter_um"), row, strict=True))
    for name, (x0, y0, w, h) in REGIONS.items():
        q = (
            f"SELECT count(*) FROM nuclei WHERE centroid_x >= {x0} AND centroid_x < {x0 + w} "
            f"AND centroid_y >= {y0} AND centroid_y < {y0 + h}"
        )
        hit = res.sql(q).fetchone()
        values[f"nuclei_{name}"] = hit[0] if hit else 0
    return {k: round(float(v), 4) if v is not None else float("nan") for k, v in values.items()}


def overlays(out: Path, slide: str, folder: Path, label: str) -> list[Path]:
    """Outlines (yellow) over each region of :data:`REGIONS`, 2x enlarged; returns the files."""
    res = open_results(out)
    (slide_id,) = [s for s in res.slides()["slide_id"]]
    table = pq.read_table(res.table_path(slide_id), columns=["geometry"])
    polys = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with open_slide(slide) as s:
        for name, (x0, y0, w, h) in REGIONS.items():
            crop = s.read_region(0, x0, y0, w, h)
            big = np.asarray(Image.fromarray(crop).resize((2 * w, 2 * h), Image.Resampling.LANCZOS))
            near = shapely.intersects(polys, shapely.box(x0, y0, x0 + w, y0 + h))
            pic = draw_outlines(
                big,
                polys[near],
                [(255, 230, 0)] * int(near.sum()),
                origin=(x0, y0),
                scale=2,
                width=2,
            )
            path = folder / f"{label}-{name}.png"
            Image.fromarray(pic).save(path, optimize=True)
            written.append(path)
    return written


def pair(folder: Path, before: str, after: str, dest: Path) -> list[Path]:
    """``before`` and ``after`` overlays of each region side by side, captioned, as JPEG."""
    from PIL import ImageDraw

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in REGIONS:
        a = Image.open(folder / f"{before}-{name}.png").convert("RGB")
        b = Image.open(folder / f"{after}-{name}.png").convert("RGB")
        canvas = Image.new("RGB", (a.width + b.width + 16, a.height + 36), "white")
        canvas.paste(a, (0, 36))
        canvas.paste(b, (a.width + 16, 36))
        draw = ImageDraw.Draw(canvas)
        for x, text in ((8, before), (a.width + 24, after)):
            draw.text((x, 8), f"{text}: CMU-1 {name}", fill=(0, 0, 0), font_size=22)
        path = dest / f"cmu1-{name}.jpg"
        canvas.save(path, quality=82, optimize=True)
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slide", nargs="?", default=str(DEFAULT))
    ap.add_argument("--model", default=None, help="segmenter (default: nucscale run's)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--label", default=None, help="name in the JSON and the overlay files")
    ap.add_argument("--overlays", type=Path, default=None, help="write region overlays here")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run's output here")
    ap.add_argument("--pair", nargs=2, metavar=("BEFORE", "AFTER"), default=None)
    ap.add_argument("--to", type=Path, default=REPO / "docs" / "overlays")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="more `nucscale run` options")
    args = ap.parse_args()
    if args.pair:
        if args.overlays is None:
            raise SystemExit("--pair needs --overlays DIR (where the overlays are)")
        files = pair(args.overlays, *args.pair, args.to)
        print(json.dumps({"benchmark": "plausibility-pair", "files": [str(f) for f in files]}))
        return
    label = args.label or args.model or "default"
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "out"
        run(args.slide, out, args.model, args.weights, args.extra)
        record = {"benchmark": "plausibility", "label": label, "slide": Path(args.slide).name}
        record.update(figures(out))
        if args.overlays is not None:
            record["overlays"] = [str(p) for p in overlays(out, args.slide, args.overlays, label)]
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
