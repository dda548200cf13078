"""The labelling loop's files: what ``nucscale label suggest`` writes for a person to label, and
how ``nucscale label import`` adds the answers to the labels.

A round folder (default ``OUT/labeling/round-NNN``, the next free number) holds:

- ``<slide_id>.geojson``: the suggested nuclei of each slide for QuPath, classified as their
  segmenter type (not as the prediction, so whatever class the person sets is an answer, and
  one left alone is not), the prediction's probabilities as measurements;
- ``contact-sheet.png``: a crop around each suggested nucleus, outlined, with its rank, slide
  and nucleus id, for labelling without QuPath;
- ``labels-template.csv``: ``rank, slide_id, nucleus_id, label`` (empty: to fill in),
  ``predicted``, ``confidence``, ``uncertainty``;
- ``suggestions.json``: the model, strategy, how many nuclei were candidates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nucscale.classify._active import select_batch, uncertainty
from nucscale.classify._features import slide_matrix
from nucscale.classify._labels import LABEL_COLUMNS, check_labels, load_labels
from nucscale.classify._model import load_model
from nucscale.errors import InputError
from nucscale.store import nuclei_path, read_manifest
from nucscale.store._atomic import atomic_bytes, atomic_write
from nucscale.store._export import write_qupath_geojson

TEMPLATE = "labels-template.csv"
SHEET = "contact-sheet.png"


def next_round(out: Path) -> Path:
    """``OUT/labeling/round-NNN``: one past the highest round there."""
    base = out / "labeling"
    taken = [int(p.name[6:]) for p in base.glob("round-[0-9][0-9][0-9]") if p.name[6:].isdigit()]
    return base / f"round-{max(taken, default=0) + 1:03d}"


def finished_slides(out: Path) -> dict[str, str]:
    """slide id -> input path of every slide of ``out`` that finished."""
    rows = read_manifest(out).values()
    return {r.slide_id: r.path for r in rows if r.status == "done"}


def candidates(
    out: Path, model_path: Path, labelled: pd.DataFrame | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """Every unlabelled nucleus of ``out``: (``slide_id``, ``nucleus_id`` rows, features,
    probabilities, class names)."""
    model, _ = load_model(model_path)
    frames, xs, ps = [], [], []
    done = set()
    if labelled is not None and len(labelled):
        done = set(
            zip(labelled["slide_id"].astype(str), labelled["nucleus_id"].astype(int), strict=True)
        )
    for sid in sorted(finished_slides(out)):
        if not nuclei_path(out, sid).exists():
            continue
        ids, x = slide_matrix(out, sid, model.features)
        keep = np.asarray([(sid, int(i)) not in done for i in ids], dtype=bool)
        if not keep.any():
            continue
        frames.append(pd.DataFrame({"slide_id": sid, "nucleus_id": ids[keep]}))
        xs.append(x[keep])
        ps.append(model.predict_proba(x[keep]))
    if not frames:
        raise InputError(out, "no unlabelled nucleus left to suggest")
    return (
        pd.concat(frames, ignore_index=True),
        np.concatenate(xs),
        np.concatenate(ps),
        model.classes,
    )


def suggest(
    out: Path,
    model_path: Path,
    n: int,
    dest: Path,
    *,
    labels: Path | None = None,
    strategy: str = "entropy",
    seed: int = 0,
) -> pd.DataFrame:
    """Choose ``n`` nuclei (uncertainty + diversity) and write the round folder ``dest``
    (module docstring); returns the template's rows."""
    labelled = load_labels(labels, out) if labels is not None and labels.exists() else None
    rows, x, proba, classes = candidates(out, model_path, labelled)
    pick = select_batch(proba, x, n, strategy=strategy, seed=seed)
    chosen = rows.iloc[pick].reset_index(drop=True)
    p = proba[pick]
    chosen.insert(0, "rank", np.arange(1, len(chosen) + 1))
    chosen["label"] = ""
    chosen["predicted"] = [classes[i] for i in np.argmax(p, axis=1)]
    chosen["confidence"] = np.round(p.max(axis=1), 4)
    chosen["uncertainty"] = np.round(uncertainty(p, strategy), 4)
    dest.mkdir(parents=True, exist_ok=True)
    for sid, group in chosen.groupby("slide_id", sort=True):
        _write_slide_geojson(out, str(sid), group["nucleus_id"].to_numpy(), dest)
    from nucscale.classify._sheet import contact_sheet

    atomic_bytes(dest / SHEET, contact_sheet(out, chosen))
    atomic_bytes(dest / TEMPLATE, chosen.to_csv(index=False))
    info = {
        "model": str(model_path),
        "strategy": strategy,
        "candidates": len(rows),
        "suggested": len(chosen),
        "labels": str(labels) if labels is not None else None,
        "classes": classes,
    }
    atomic_bytes(dest / "suggestions.json", json.dumps(info, indent=1))
    return chosen


def _write_slide_geojson(out: Path, slide_id: str, ids: np.ndarray, dest: Path) -> None:
    """The suggested nuclei of one slide as QuPath detections (their own type as class)."""
    table = pq.read_table(nuclei_path(out, slide_id))
    keep = pc.is_in(table.column("nucleus_id"), value_set=pa.array(ids.astype(np.int64)))
    part = dest / f".{slide_id}.parquet"
    pq.write_table(table.filter(keep), part)
    try:
        write_qupath_geojson(part, dest / f"{slide_id}.geojson", slide_id)
    finally:
        part.unlink(missing_ok=True)


def read_answers(path: Path, out: Path) -> pd.DataFrame:
    """A person's answers: the template filled in (rows with an empty label are skipped) or a
    QuPath GeoJSON of the suggested nuclei; checked against ``out``'s nuclei."""
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, dtype={"slide_id": str, "label": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot read the answers: {exc}") from None
        missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(path, f"no column {', '.join(missing)} (the template's columns)")
        frame = frame[frame["label"].str.strip() != ""][list(LABEL_COLUMNS)]
        if frame.empty:
            raise InputError(path, "no row has a label yet: fill in the label column")
        return check_labels(frame.reset_index(drop=True), path, out)
    return load_labels(path, out)


def import_answers(out: Path, answers: Path, into: Path) -> tuple[pd.DataFrame, int]:
    """Add ``answers`` to the labels file ``into`` (CSV or Parquet, created if missing): a
    nucleus answered again takes its new label. Returns the merged labels and how many
    answers were new."""
    new = read_answers(answers, out)
    old = load_labels(into, out) if into.exists() else pd.DataFrame(columns=list(LABEL_COLUMNS))
    key = ["slide_id", "nucleus_id"]
    before = set(map(tuple, old[key].astype({"nucleus_id": int}).itertuples(index=False)))
    added = sum((s, int(n)) not in before for s, n in new[key].itertuples(index=False, name=None))
    merged = pd.concat([old[list(LABEL_COLUMNS)], new[list(LABEL_COLUMNS)]], ignore_index=True)
    merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key)
    merged = merged.reset_index(drop=True)
    _write_labels(merged, into)
    return merged, added


def _write_labels(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    elif path.suffix.lower() == ".csv":
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        raise InputError(path, "the labels file must end in .csv or .parquet")


def class_counts(frame: pd.DataFrame) -> Sequence[tuple[str, int]]:
    """(class, labels) pairs, most labelled first."""
    counts = frame["label"].value_counts()
    return [(str(k), int(v)) for k, v in counts.items()]
