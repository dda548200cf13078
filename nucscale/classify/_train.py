"""``nucscale classify train``: labels + a run's features -> a calibrated classifier, its card.

:func:`train_classifier` chains the pure steps of the package (load and check the labels, choose
the features, build the matrix, cross-validate, fit on everything, save, write the card) and
refuses, with one line naming the file, anything that would make the model or its figures
meaningless: fewer than 2 classes, a class too small for the cross-validation, missing
feature columns, labels of nuclei the output does not have.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nucscale import __version__
from nucscale.classify._card import write_card
from nucscale.classify._cv import DEFAULT_FOLDS, check_class_counts, cross_validate
from nucscale.classify._features import choose_features, feature_matrix
from nucscale.classify._labels import load_labels
from nucscale.classify._model import (
    CALIBRATION_FOLDS,
    CLASSIFIERS,
    file_sha256,
    fit_model,
    save_model,
)
from nucscale.errors import InputError

CAVEAT = (
    "Cross-validation folds are drawn at random over the labelled nuclei, usually of one or a "
    "few slides: the figures say how well these labels are reproduced on the same slides. "
    "Expect lower figures on slides of another lab, stain or scanner; label some nuclei there "
    "and train again. The classes are only as good as the labels."
)
_ESTIMATORS = {
    "gbt": "HistGradientBoostingClassifier(class_weight='balanced')",
    "rf": "RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight='balanced')",
}


def train_classifier(
    out: str | Path,
    labels: str | Path,
    model_path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    feature_set: str | None = None,
    classifier: str = "gbt",
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    keep_unchanged: bool = False,
) -> dict[str, Any]:
    """Train a cell classifier on the nuclei of ``out`` labelled in ``labels``; write it to
    ``model_path`` with its card beside it; returns the card (a dict, as written)."""
    import sklearn
    import skops

    out, labels, model_path = Path(out), Path(labels), Path(model_path)
    if classifier not in CLASSIFIERS:
        raise InputError(model_path, f"unknown classifier {classifier!r}; choose gbt or rf")
    frame = load_labels(labels, out, keep_unchanged=keep_unchanged)
    reason = check_class_counts(frame["label"].tolist(), folds)
    if reason is not None:
        raise InputError(labels, reason)
    slides = sorted(set(frame["slide_id"]))
    features = choose_features(out, slides, columns, feature_set)
    x = feature_matrix(out, frame, features)
    y = frame["label"].tolist()
    metrics = cross_validate(x, y, classifier=classifier, seed=seed, folds=folds)
    model = fit_model(x, y, features, classifier=classifier, seed=seed)
    sha = save_model(model, model_path)
    card: dict[str, Any] = {
        "model_file": model_path.name,
        "model_sha256": sha,
        "format": "skops",
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
        "nucscale_version": __version__,
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "python": platform.python_version(),
        "classifier": classifier,
        "estimator": f"CalibratedClassifierCV({_ESTIMATORS[classifier]}, method='sigmoid', "
        f"cv={CALIBRATION_FOLDS} stratified folds), random_state={seed}",
        "output": str(out),
        "labels": {
            "file": str(labels),
            "sha256": file_sha256(labels),
            "slides": slides,
            "keep_unchanged": keep_unchanged,
        },
        "features": features,
        "classes": model.classes,
        "counts": metrics.counts,
        "cross_validation": metrics.to_dict(),
        "caveat": CAVEAT,
    }
    write_card(model_path, card)
    return card
