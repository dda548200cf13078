"""Cell classes from nucleus features: labels, feature matrices, a calibrated classifier saved
without pickle, cross-validated figures, and the per-slide class tables.

The pieces, each usable alone (``nucscale label suggest`` and simulations build on them):

- :func:`load_labels`: labels from CSV, Parquet or QuPath GeoJSON, matched to ``OUT``'s nuclei;
- :func:`choose_features`, :func:`feature_matrix` (rows of ``slide_id``, ``nucleus_id``),
  :func:`slide_matrix` (every nucleus of a slide);
- :func:`fit` (cross-validated metrics and the model fitted on everything), or
  :func:`cross_validate` and :func:`fit_model` apart; ``ClassModel.predict_proba``;
- :func:`save_model` / :func:`load_model` (skops, an explicit trusted-type list);
- :func:`prediction_table`, :func:`predict_slide`, :func:`predict_output`;
- :func:`train_classifier`: what ``nucscale classify train`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nucscale.classify._cv import (
    DEFAULT_FOLDS,
    Metrics,
    check_class_counts,
    class_counts,
    cross_validate,
    min_per_class,
)
from nucscale.classify._features import (
    FEATURE_SETS,
    FULL_FEATURES,
    LEAKING,
    NUCLEUS_FEATURES,
    choose_features,
    feature_matrix,
    slide_matrix,
)
from nucscale.classify._geojson import class_of, read_geojson_labels
from nucscale.classify._labels import LABEL_COLUMNS, check_labels, load_labels
from nucscale.classify._model import (
    CLASSIFIERS,
    TRUSTED_TYPES,
    ClassModel,
    fit_model,
    load_model,
    make_estimator,
    save_model,
)
from nucscale.classify._predict import predict_output, predict_slide, prediction_table
from nucscale.classify._train import train_classifier


def fit(
    x: np.ndarray,
    y: Sequence[str],
    features: Sequence[str],
    *,
    classifier: str = "gbt",
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
) -> tuple[ClassModel, Metrics]:
    """Cross-validate (``folds`` seeded stratified folds) and fit on all of ``x``, ``y``;
    the model and its out-of-fold metrics. ``ValueError`` when ``y`` fails
    :func:`check_class_counts`."""
    metrics = cross_validate(x, y, classifier=classifier, seed=seed, folds=folds)
    return fit_model(x, y, features, classifier=classifier, seed=seed), metrics


__all__ = [
    "CLASSIFIERS",
    "DEFAULT_FOLDS",
    "FEATURE_SETS",
    "FULL_FEATURES",
    "LABEL_COLUMNS",
    "LEAKING",
    "NUCLEUS_FEATURES",
    "TRUSTED_TYPES",
    "ClassModel",
    "Metrics",
    "check_class_counts",
    "check_labels",
    "choose_features",
    "class_counts",
    "class_of",
    "cross_validate",
    "feature_matrix",
    "fit",
    "fit_model",
    "load_labels",
    "load_model",
    "make_estimator",
    "min_per_class",
    "predict_output",
    "predict_slide",
    "prediction_table",
    "read_geojson_labels",
    "save_model",
    "slide_matrix",
    "train_classifier",
]
