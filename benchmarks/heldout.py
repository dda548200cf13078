"""Benchmark: segmenters on the held-out DSB 2018 images, each through ``nucscale run``.

Every held-out image of ``dsb2018-dev`` (the split of :func:`nucscale.train.load_split`, the one
the default U-Net never saw) goes through the real pipeline as a plain PNG at 0.5 µm/px, with
modality detection on, exactly as ``nucscale run IMAGE --mpp 0.5 --model NAME`` would run it.
The labels it writes are scored against the ground truth; one JSON line per image and model,
then one per model and modality (means over images), then a Markdown table for the model card.

    python benchmarks/heldout.py [--models baseline,unet,torchscript] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nucscale.analysis import evaluate
from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.store import open_labels
from nucscale.train import load_split

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DSB = SHARED / "nuclei" / "dsb2018-dev"
METRICS = ("pq", "dq", "sq", "aji", "dice", "iou_dsb")


def settings_for(name: str) -> Settings:
    """Settings of ``nucscale run --model NAME`` (the bioimage.io network for torchscript)."""
    if name == "torchscript":
        weights = SHARED / "models" / "unet2d-nuclei-broad" / "weights.pt"
        return Settings(segmenter=name, weights=str(weights))
    return Settings(segmenter=name)


def run_model(name: str, ids: list[str], workers: int, out: Path) -> dict[str, dict[str, Any]]:
    """Scores per image id of segmenter ``name`` on the images ``ids``."""
    paths = [str(DSB / f"{i}_image.png") for i in ids]
    slides, rejected = resolve_inputs(paths, mpp=0.5)
    with get_client(workers=workers, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings_for(name), out)
    failed = [r for r in rows if r.status != "done"]
    if failed:
        raise SystemExit(f"{name}: {failed[0].slide_id} failed: {failed[0].error}")
    scores = {}
    for i in ids:
        pred = np.asarray(open_labels(out, f"{i}_image")[:])
        gt = np.asarray(Image.open(DSB / f"{i}_labels.png")).astype(np.int32)
        scores[i] = {k: float(v) for k, v in evaluate(gt, pred).items()}
    return scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="baseline,unet,torchscript")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    _, held, modality = load_split(DSB)
    table: list[str] = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            scores = run_model(name, held, args.workers, Path(tmp))
        for i, s in scores.items():
            print(json.dumps({"benchmark": "heldout", "model": name, "image": i, **s}))
        for mod in sorted({modality[i] for i in held}):
            rows = [scores[i] for i in held if modality[i] == mod]
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
