"""``nucscale label simulate``: :func:`nucscale.classify._active.simulate` on a run's labelled
nuclei, written as a table, a plot and a summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nucscale.classify._active import curve_summary, plot_curves, simulate
from nucscale.classify._features import choose_features, feature_matrix
from nucscale.classify._labels import load_labels
from nucscale.errors import InputError
from nucscale.store._atomic import atomic_bytes


def labels_to_reach(summary: pd.DataFrame, method: str, target: float) -> float | None:
    """The fewest labels at which ``method``'s mean balanced accuracy reaches ``target``."""
    s = summary[(summary["method"] == method) & (summary["balanced_accuracy"] >= target)]
    return float(s["labels"].min()) if len(s) else None


def run_simulation(
    out: Path,
    labels: Path,
    dest: Path,
    *,
    start: int,
    step: int,
    rounds: int,
    seeds: int,
    strategy: str,
    classifier: str,
    feature_set: str | None,
    test_fraction: float,
    title: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the experiment on ``labels`` (nuclei of ``out``); write ``curves.csv``,
    ``curves.png`` and ``summary.json`` into ``dest``; return the summary."""
    frame = load_labels(labels, out)
    y = frame["label"].to_numpy(dtype=str)
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise InputError(labels, "the simulation needs at least 2 classes")
    if counts.min() < 10:
        raise InputError(labels, f"class {classes[np.argmin(counts)]!r} has fewer than 10 labels")
    needed = start + step * rounds
    pool = int(len(y) * (1 - test_fraction))
    if needed > pool:
        raise InputError(
            labels,
            f"{start} + {rounds} x {step} = {needed} labels asked for, but the pool holds "
            f"{pool} ({len(y)} labelled less the {test_fraction:.0%} test share)",
        )
    features = choose_features(out, sorted(set(frame["slide_id"])), None, feature_set)
    x = feature_matrix(out, frame, features)
    curves = simulate(
        x, y, start=start, step=step, rounds=rounds, seeds=seeds, strategy=strategy,
        classifier=classifier, test_fraction=test_fraction, progress=progress,
    )  # fmt: skip
    summary_table = curve_summary(curves)
    last = summary_table[summary_table["round"] == summary_table["round"].max()]
    final = {
        str(r.method): {
            "labels": int(r.labels),
            "balanced_accuracy": round(float(r.balanced_accuracy), 4),
            "balanced_accuracy_sd": round(float(r.balanced_accuracy_sd), 4),
            "accuracy": round(float(r.accuracy), 4),
        }
        for r in last.itertuples()
    }
    target = 0.95 * final["random"]["balanced_accuracy"]
    summary = {
        "labels_file": str(labels),
        "labelled": len(y),
        "classes": {str(c): int(k) for c, k in zip(classes, counts, strict=True)},
        "features": len(features),
        "strategy": strategy,
        "classifier": classifier,
        "start": start,
        "step": step,
        "rounds": rounds,
        "seeds": seeds,
        "test_fraction": test_fraction,
        "final": final,
        "labels_to_95pct_of_random_final": {
            m: labels_to_reach(summary_table, m, target) for m in ("active", "random")
        },
        "mean_balanced_accuracy_over_rounds": {
            m: round(
                float(summary_table.loc[summary_table["method"] == m, "balanced_accuracy"].mean()),
                4,
            )
            for m in ("active", "random")
        },
    }
    title = title or f"{strategy} + diversity vs random, {classifier}, {len(y)} labelled nuclei"
    atomic_bytes(dest / "curves.csv", curves.to_csv(index=False))
    atomic_bytes(dest / "curves.png", plot_curves(curves, title))
    atomic_bytes(dest / "summary.json", json.dumps(summary, indent=1))
    return summary
