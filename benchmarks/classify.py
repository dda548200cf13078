"""Benchmark: cell classes on CMU-1 with rule-derived labels; one JSON line per classifier and
feature set.

Runs ``nucscale run CMU-1-Small-Region.svs --features full`` (the default U-Net unless
``--model``; or reuses ``--out`` if it holds a finished run), labels ``--labelled`` nuclei drawn
at random by a rule (``pale`` below the 40th percentile of haematoxylin optical density, else
``dark small`` / ``dark large`` by the median area: rule-derived, not a pathologist's labels),
then for gbt and rf, on the nucleus table's 23 measurements (morphology) and on those plus the
features table's 28 (full): 5-fold cross-validated accuracy, balanced accuracy and macro F1,
the training time, and the agreement of the predicted classes with the rule on the nuclei that
were not labelled.

    python benchmarks/classify.py [--out DIR] [--model unet|baseline] [--labelled 300]
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
import pandas as pd
import pyarrow.parquet as pq

from nucscale.classify import (
    load_labels,
    predict_output,
    train_classifier,
)
from nucscale.store import classes_path, nuclei_path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NUCSCALE_SHARED_DATA", REPO.parent / "shared" / "data"))
SLIDE = "CMU-1-Small-Region"
MACHINE = {"cpus": os.cpu_count(), "python": platform.python_version()}


def rule(nuclei: pd.DataFrame) -> np.ndarray:
    """The classes of the labels (module docstring)."""
    h, area = nuclei["od_haematoxylin"], nuclei["area"]
    dark = np.where(area < area.median(), "dark small", "dark large")
    return np.where(h < h.quantile(0.4), "pale", dark)


def ensure_run(out: Path, model: str) -> None:
    if nuclei_path(out, SLIDE).exists():
        return
    svs = SHARED / "slides" / f"{SLIDE}.svs"
    cmd = [sys.executable, "-m", "nucscale", "run", str(svs), "--out", str(out)]
    cmd += ["--model", model, "--features", "full", "--dashboard", ":0"]
    subprocess.run(cmd, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="run folder (made if empty)")
    ap.add_argument("--model", default="unet", help="segmenter of the run")
    ap.add_argument("--labelled", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "out"
        ensure_run(out, args.model)
        nuclei = pq.read_table(nuclei_path(out, SLIDE)).to_pandas()
        truth = pd.Series(rule(nuclei), index=nuclei["nucleus_id"])
        picked = nuclei["nucleus_id"].sample(args.labelled, random_state=args.seed).to_numpy()
        labels = Path(tmp) / "labels.csv"
        pd.DataFrame(
            {"slide_id": SLIDE, "nucleus_id": picked, "label": truth[picked].to_numpy()}
        ).to_csv(labels, index=False)
        counts = load_labels(labels, out)["label"].value_counts().sort_index().to_dict()
        rest = ~nuclei["nucleus_id"].isin(picked).to_numpy()
        for classifier in ("gbt", "rf"):
            for feature_set in ("morphology", "full"):
                model = Path(tmp) / f"{classifier}-{feature_set}.skops"
                t0 = time.perf_counter()
                card = train_classifier(
                    out, labels, model, classifier=classifier, feature_set=feature_set,
                    seed=args.seed,
                )  # fmt: skip
                train_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                predict_output(out, model)
                predict_s = time.perf_counter() - t0
                got = pq.read_table(classes_path(out, SLIDE), columns=["class"]).to_pandas()
                agree = float(np.mean(got["class"].to_numpy()[rest] == truth.to_numpy()[rest]))
                cv = card["cross_validation"]
                print(
                    json.dumps(
                        {
                            "benchmark": "classify",
                            "slide": SLIDE,
                            "segmenter": args.model,
                            "nuclei": len(nuclei),
                            "labelled": args.labelled,
                            "label_counts": counts,
                            "labels": "rule-derived (haematoxylin OD p40, median area)",
                            "classifier": classifier,
                            "feature_set": feature_set,
                            "features": len(card["features"]),
                            "folds": cv["folds"],
                            "cv_accuracy": round(cv["accuracy"], 4),
                            "cv_balanced_accuracy": round(cv["balanced_accuracy"], 4),
                            "cv_macro_f1": round(cv["macro_f1"], 4),
                            "cv_log_loss": round(cv["log_loss"], 4),
                            "agreement_unlabelled": round(agree, 4),
                            "train_s": round(train_s, 1),
                            "predict_s": round(predict_s, 2),
                            "machine": MACHINE,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
