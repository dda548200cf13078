"""Predicting cell classes for every nucleus of a run: ``OUT/classes/slide_id=<id>/``.

:func:`prediction_table` is the pure part (ids and probabilities to the class table of
:mod:`nucscale.store._classes`); :func:`predict_slide` reads a slide's features and applies a
model; :func:`predict_output` does every finished slide of ``OUT`` after checking that each has
every feature column the model needs, so a model that does not fit the output writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from nucscale import __version__
from nucscale.classify._features import check_columns, slide_matrix
from nucscale.classify._model import ClassModel, load_model
from nucscale.errors import InputError
from nucscale.query import open_results
from nucscale.store import classes_path, classes_schema, write_classes
from nucscale.store._classes import CLASS, MODEL_HASH, nuclei_stamp, prob_column


def prediction_table(
    ids: np.ndarray, proba: np.ndarray, classes: Sequence[str], model_sha256: str
) -> pa.Table:
    """The class table of nuclei ``ids`` from their probabilities (n, len(classes)): the most
    probable class (the first on a tie), each class's probability, the model's hash."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(ids), len(classes)):
        raise ValueError(
            f"probabilities {proba.shape} for {len(ids)} nuclei, {len(classes)} classes"
        )
    schema = classes_schema(classes)
    names = np.asarray(classes, dtype=object)
    best = names[np.argmax(proba, axis=1)] if len(ids) else np.zeros(0, object)
    cols: dict[str, pa.Array] = {
        "nucleus_id": pa.array(np.asarray(ids, dtype=np.int64)),
        CLASS: pa.array(best.tolist(), pa.string()),
    }
    for i, c in enumerate(classes):
        cols[prob_column(c)] = pa.array(proba[:, i].astype(np.float32))
    cols[MODEL_HASH] = pa.array([model_sha256] * len(ids), pa.string())
    return pa.table(cols, schema=schema)


def predict_slide(out: Path, slide_id: str, model: ClassModel, model_sha256: str) -> pa.Table:
    """The class table of every nucleus of one finished slide."""
    ids, x = slide_matrix(out, slide_id, model.features)
    return prediction_table(ids, model.predict_proba(x), model.classes, model_sha256)


def predict_output(out: str | Path, model_path: str | Path) -> dict[str, dict[str, int]]:
    """Write the class table of every finished slide of ``out`` with the model in
    ``model_path``; returns the nuclei per class of each slide.

    Raises
    ------
    InputError
        The model file is refused (:func:`load_model`); ``out`` has no finished slide; a slide
        lacks a feature column of the model (checked for every slide before anything is
        written).
    """
    out = Path(out)
    model, sha = load_model(model_path)
    with open_results(out) as res:
        slides = res.slide_ids()
    if not slides:
        raise InputError(out, "no finished slide to classify")
    for sid in slides:
        try:
            check_columns(out, sid, model.features)
        except InputError as exc:
            raise InputError(
                exc.path, f"{exc.reason}: the model {Path(model_path).name} needs it"
            ) from None
    counts: dict[str, dict[str, int]] = {}
    for sid in slides:
        table = predict_slide(out, sid, model, sha)
        meta = {
            "version": __version__,
            "slide_id": sid,
            "model_sha256": sha,
            "model_file": Path(model_path).name,
            "classes": json.dumps(model.classes),
            "model_features": json.dumps(model.features),
            "predicted": datetime.now(UTC).isoformat(timespec="seconds"),
            **nuclei_stamp(out, sid),
        }
        write_classes(classes_path(out, sid), table, meta)
        names, n = np.unique(table.column(CLASS).to_numpy(zero_copy_only=False), return_counts=True)
        found = dict(zip(names.tolist(), n.tolist(), strict=True))
        counts[sid] = {c: int(found.get(c, 0)) for c in model.classes}
    return counts
