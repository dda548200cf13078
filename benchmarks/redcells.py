"""Benchmark: red-cell shape classification (sickle / discocyte / elliptocyte) on SYNTHETIC
blood smears, end to end through nucscale's CLI. The data are generated (nucscale.smear), not
real: no labelled blood smear exists here.

1. ``--images`` smears are generated (seeds 0..N-1, 768 x 768 px at 0.25 µm/px);
2. ``nucscale run smear-*.tif --model redcells [--features full]`` segments them (the weights-free
   red-cell segmenter); segmentation PQ against the generated truth;
3. each segmented cell matched (IoU > 0.5, not cut by the image edge) to a generated cell takes
   its class: the labels;
4. ``nucscale classify train`` (gbt) on the nucleus table's measurements and on the full set
   (with Feret diameters and Zernike moments when ``--features full`` has them): 5-fold CV;
5. ``nucscale label simulate``: active (entropy + diversity) against random labelling;
6. ``nucscale classify predict`` and a picture of one smear with each cell outlined in the
   colour of its predicted class (``--pictures DIR``).

One JSON object is printed.

    python benchmarks/redcells.py [--images 16] [--work DIR] [--pictures docs/redcells]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import shapely
import tifffile

from nucscale.report._pictures import draw_outlines, png_bytes
from nucscale.smear import matched_classes, segmentation_scores, write_smears
from nucscale.store import classes_path, nuclei_path

MACHINE = {"cpus": os.cpu_count(), "python": platform.python_version()}
COLOURS = {"discocyte": (30, 120, 255), "sickle": (230, 30, 30), "elliptocyte": (20, 170, 60)}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "nucscale", *args], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"nucscale {' '.join(args)} failed:\n{res.stderr}")
    return res


def _train(out: Path, labels: Path, model: Path, feature_set: str) -> dict[str, object]:
    t0 = time.perf_counter()
    _cli("classify", "train", str(out), "--labels", str(labels), "--model", str(model),
         "--feature-set", feature_set)  # fmt: skip
    card = json.loads(model.with_suffix(".card.json").read_text())
    cv = card["cross_validation"]
    return {
        "features": len(card["features"]),
        "cv_accuracy": round(cv["accuracy"], 4),
        "cv_balanced_accuracy": round(cv["balanced_accuracy"], 4),
        "cv_macro_f1": round(cv["macro_f1"], 4),
        "per_class_f1": {c: round(cv["per_class"][c]["f1"], 4) for c in cv["classes"]},
        "confusion": cv["confusion"],
        "classes": cv["classes"],
        "train_s": round(time.perf_counter() - t0, 1),
    }


def _picture(folder: Path, out: Path, image: str, dest: Path) -> None:
    """The smear with every segmented cell outlined in its predicted class's colour."""
    rgb = tifffile.imread(folder / f"{image}.tif")
    nuclei = pq.read_table(nuclei_path(out, image), columns=["nucleus_id", "geometry"])
    classes = pq.read_table(classes_path(out, image), columns=["nucleus_id", "class"])
    by_id = dict(zip(classes.column("nucleus_id").to_pylist(), classes.column("class").to_pylist(),
                     strict=True))  # fmt: skip
    polys = shapely.from_wkb(nuclei.column("geometry").to_numpy(zero_copy_only=False))
    ids = nuclei.column("nucleus_id").to_pylist()
    colours = [COLOURS.get(by_id.get(n, ""), (0, 0, 0)) for n in ids]
    dest.write_bytes(png_bytes(draw_outlines(rgb, polys, colours, width=2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--work", type=Path, default=None, help="keep the smears and the run here")
    ap.add_argument("--pictures", type=Path, default=None, help="write the class picture here")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the simulation")
    ap.add_argument("--reuse", action="store_true", help="keep --work's smears and run")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="redcells-"))
    folder, out = work / "smears", work / "out"
    t0 = 0.0
    if not (args.reuse and (out / "manifest.parquet").exists()):
        shutil.rmtree(out, ignore_errors=True)
        write_smears(folder, args.images)
        t0 = time.perf_counter()
        _cli("run", *sorted(str(p) for p in folder.glob("smear-*.tif")), "--out", str(out),
             "--model", "redcells", "--features", "full", "--dashboard", ":0")  # fmt: skip
    run_s = time.perf_counter() - t0 if t0 else None
    seg = segmentation_scores(out, folder)

    labels = matched_classes(out, folder)
    labels_path = work / "labels.csv"
    labels.to_csv(labels_path, index=False)
    result: dict[str, object] = {
        "benchmark": "redcells",
        "data": "SYNTHETIC blood smears (nucscale.smear), not real",
        "images": args.images,
        "run_s": round(run_s, 1) if run_s is not None else None,  # None: --reuse
        "segmentation": {
            "pq_mean": round(float(seg["pq"].mean()), 4),
            "pq_min": round(float(seg["pq"].min()), 4),
            "dq_mean": round(float(seg["dq"].mean()), 4),
            "sq_mean": round(float(seg["sq"].mean()), 4),
            "cells_true": int(seg["tp"].sum() + seg["fn"].sum()),
            "found_matched": int(seg["tp"].sum()),
            "false_positives": int(seg["fp"].sum()),
        },
        "labels": labels["label"].value_counts().to_dict(),
    }
    result["classify_morphology"] = _train(out, labels_path, work / "clf-morph.skops", "morphology")
    result["classify_full"] = _train(out, labels_path, work / "clf-full.skops", "full")

    sim = work / "simulation"
    _cli("label", "simulate", str(out), "--labels", str(labels_path), "--to", str(sim),
         "--start", "15", "--step", "10", "--rounds", "10", "--seeds", str(args.seeds),
         "--feature-set", "full", "--title",
         "SYNTHETIC smears: entropy + diversity vs random, gbt")  # fmt: skip
    result["simulation"] = json.loads((sim / "summary.json").read_text())

    _cli("classify", "predict", str(out), "--model", str(work / "clf-full.skops"))
    if args.pictures is not None:
        args.pictures.mkdir(parents=True, exist_ok=True)
        _picture(folder, out, "smear-000", args.pictures / "smear-000-classes.png")
        shutil.copy(sim / "curves.png", args.pictures / "active-vs-random.png")
        shutil.copy(sim / "curves.csv", args.pictures / "active-vs-random.csv")
    predicted = np.concatenate([
        pq.read_table(classes_path(out, s), columns=["class"]).column("class").to_numpy(
            zero_copy_only=False)
        for s in sorted(labels["slide_id"].unique())
    ])  # fmt: skip
    names, counts = np.unique(predicted, return_counts=True)
    result["predicted_all_cells"] = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    result["machine"] = MACHINE
    result["work"] = str(work)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
