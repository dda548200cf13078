"""Benchmark: segmenters on the held-out DSB 2018 images at their true scale, via ``nucscale run``.

Every held-out image of ``dsb2018-dev`` (the split of :func:`nucscale.train.load_split`, the one
the default U-Net never saw) goes through the real pipeline as a plain PNG with *its own* pixel
size (``index.json``'s ``mpp``, else the rule of :mod:`nucscale.train._scale`), given in a CSV
manifest's ``mpp`` column, exactly as a user with calibrated images runs
``nucscale run IMAGE --mpp <its mpp>``: the pipeline resamples it to the model's pixel size,
detects the modality, tiles and stitches. The label image it writes (at the analysis pixel
size) is mapped back to the image's own pixels (each pixel takes the label of the analysis
pixel that covers it) and scored against the ground truth there. One JSON line per image and
model, then one per model and modality (means over images), then a Markdown table.

    python benchmarks/heldout.py [--models baseline,unet,bioimageio] [--workers 2]
        [--unet-weights NAME=FILE ...] [--ids ID,ID]

``--unet-weights previous=old.pt`` adds a U-Net with other weights under that name (e.g. the
previous default, ``git show 7ad0141:nucscale/models/weights/unet-default.pt > old.pt``).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nucscale.analysis import evaluate, to_image_grid
from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.store import open_labels
from nucscale.train import load_split
from nucscale.train._data import pixel_sizes

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DSB = SHARED / "nuclei" / "dsb2018-dev"
BIOIMAGEIO = SHARED / "models" / "unet2d-nuclei-broad"
METRICS = ("pq", "dq", "sq", "aji", "dice", "iou_dsb")


def settings_for(name: str, weights: dict[str, str]) -> Settings:
    """Settings of ``nucscale run --model NAME`` (``weights`` names extra U-Net weights)."""
    if name in weights:
        return Settings(segmenter="unet", weights=weights[name])
    if name == "bioimageio":  # no pixel size in the package: --analysis-mpp 0.5, as its card had
        return Settings(segmenter=name, weights=str(BIOIMAGEIO), mpp=0.5)
    return Settings(segmenter=name)


def manifest(ids: list[str], folder: Path) -> Path:
    """A CSV manifest (path, slide_id, mpp) of the images ``ids`` at their own pixel sizes."""
    sizes = pixel_sizes(DSB, ids)
    path = folder / "heldout.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "slide_id", "mpp"])
        for i in ids:
            w.writerow([str(DSB / f"{i}_image.png"), i, sizes[i][0]])
    return path


def run_model(
    name: str, ids: list[str], workers: int, out: Path, weights: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Scores per image id of segmenter ``name`` on the images ``ids``."""
    slides, rejected = resolve_inputs([str(manifest(ids, out.parent))])
    with get_client(workers=workers, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings_for(name, weights), out)
    failed = [r for r in rows if r.status != "done"]
    if failed:
        raise SystemExit(f"{name}: {failed[0].slide_id} failed: {failed[0].error}")
    scores = {}
    for i in ids:
        gt = np.asarray(Image.open(DSB / f"{i}_labels.png")).astype(np.int32)
        pred = to_image_grid(np.asarray(open_labels(out, i)[:]), gt.shape)
        scores[i] = {k: float(v) for k, v in evaluate(gt, pred).items()}
    return scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="baseline,unet,bioimageio")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--unet-weights", nargs="*", default=[], help="NAME=FILE U-Net weights")
    ap.add_argument("--ids", default=None, help="comma-separated image ids (default: held out)")
    args = ap.parse_args()
    weights = dict(w.split("=", 1) for w in args.unet_weights)
    _, held, modality = load_split(DSB)
    ids = args.ids.split(",") if args.ids else held
    sizes = pixel_sizes(DSB, ids)
    table: list[str] = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            scores = run_model(name, ids, args.workers, Path(tmp) / "out", weights)
        for i, s in scores.items():
            record = {"benchmark": "heldout", "model": name, "image": i, "mpp": sizes[i][0]}
            print(json.dumps({**record, "mpp_source": sizes[i][1], **s}))
        for mod in sorted({modality[i] for i in ids}):
            rows = [scores[i] for i in ids if modality[i] == mod]
            mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in METRICS}
            summary = {"model": name, "modality": mod, "images": len(rows), **mean}
            print(json.dumps({"benchmark": "heldout-mean", **summary}), flush=True)
            table.append(
                f"| {name} | {mod} | {len(rows)} | " + " | ".join(f"{mean[k]:.3f}" for k in METRICS)
            )
    print("| model | modality | images | " + " | ".join(METRICS) + " |")
    print("|---" * (3 + len(METRICS)) + "|")
    print("\n".join(r + " |" for r in table))


if __name__ == "__main__":
    main()
