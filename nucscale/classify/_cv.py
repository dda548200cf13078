"""Cross-validated quality of a cell classifier, and the checks that make it computable.

:func:`cross_validate` fits the classifier of :func:`~nucscale.classify.make_estimator` on
``folds`` seeded stratified folds and scores the out-of-fold predictions together: accuracy,
balanced accuracy (mean recall over classes, so a rare class counts as much as a common one),
per-class precision, recall and F1, macro F1, log loss of the calibrated probabilities, and the
confusion matrix (rows: true class, columns: predicted, in class order).

The folds are random over nuclei, as the labels usually come from one or a few slides:
neighbouring nuclei look alike, so this estimates how well the labels are reproduced on the
same slides, and is optimistic for slides of another lab or scanner (label a few nuclei there
and compare).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nucscale.classify._model import CALIBRATION_FOLDS, make_estimator, one_thread

DEFAULT_FOLDS = 5


@dataclass
class Metrics:
    """Out-of-fold scores of one cross-validation."""

    folds: int
    seed: int
    n: int
    classes: list[str]
    counts: dict[str, int]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    log_loss: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    fold_balanced_accuracy: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def min_per_class(folds: int = DEFAULT_FOLDS) -> int:
    """Fewest examples of a class for :func:`cross_validate`: one in every fold, and enough in
    each training part for the calibration's own folds."""
    n = max(folds, CALIBRATION_FOLDS)
    while n - math.ceil(n / folds) < CALIBRATION_FOLDS:
        n += 1
    return n


def class_counts(y: Sequence[str]) -> dict[str, int]:
    """Examples per class, in sorted class order."""
    names, counts = np.unique(np.asarray(y, dtype=str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def check_class_counts(y: Sequence[str], folds: int = DEFAULT_FOLDS) -> str | None:
    """Why ``y`` cannot train and cross-validate a classifier, or None when it can."""
    if folds < 2:
        return f"--folds {folds}: need at least 2 folds"
    counts = class_counts(y)
    if len(counts) < 2:
        only = next(iter(counts), "none")
        return f"only one class ({only!r}); a classifier needs at least 2"
    need = min_per_class(folds)
    few = {k: v for k, v in counts.items() if v < need}
    if few:
        shown = ", ".join(f"{k!r} {v}" for k, v in list(few.items())[:3])
        return (
            f"too few examples for {folds}-fold cross-validation ({shown}); each class needs "
            f"at least {need}"
        )
    return None


def cross_validate(
    x: np.ndarray,
    y: Sequence[str],
    *,
    classifier: str = "gbt",
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
) -> Metrics:
    """Out-of-fold scores of the calibrated classifier on ``x``, ``y`` (module docstring).
    ``y`` must pass :func:`check_class_counts`."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
    )
    from sklearn.model_selection import StratifiedKFold

    reason = check_class_counts(y, folds)
    if reason is not None:
        raise ValueError(reason)
    x = np.asarray(x, dtype=np.float64)
    classes, index = np.unique(np.asarray(y, dtype=str), return_inverse=True)
    k = len(classes)
    proba = np.zeros((len(index), k), np.float64)
    per_fold: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, index):
        with one_thread():
            est = make_estimator(classifier, seed, len(train)).fit(x[train], index[train])
            proba[test] = est.predict_proba(x[test])
        per_fold.append(float(balanced_accuracy_score(index[test], np.argmax(proba[test], axis=1))))
    pred = np.argmax(proba, axis=1)
    labels = np.arange(k)
    p, r, f, support = precision_recall_fscore_support(index, pred, labels=labels, zero_division=0)
    names = [str(c) for c in classes]
    return Metrics(
        folds=folds,
        seed=seed,
        n=len(index),
        classes=names,
        counts={n: int(s) for n, s in zip(names, support, strict=True)},
        accuracy=float(accuracy_score(index, pred)),
        balanced_accuracy=float(balanced_accuracy_score(index, pred)),
        macro_f1=float(np.mean(f)),
        log_loss=float(log_loss(index, proba, labels=labels)),
        per_class={
            n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i])}
            for i, n in enumerate(names)
        },
        confusion=confusion_matrix(index, pred, labels=labels).astype(int).tolist(),
        fold_balanced_accuracy=per_fold,
    )
