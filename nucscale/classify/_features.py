"""Feature columns for cell classification, and the feature matrix of any set of nuclei.

The columns a classifier may use are the numeric measurements of a nucleus: the morphology and
intensity columns of the nucleus table, and with ``--features full`` the columns of the
features table. Identity and position never enter a model (``nucleus_id``, the tile indices,
centroids and bounding boxes, the outline): a class learnt from where a nucleus lies on one
slide says nothing about another. The segmenter's own ``type`` and ``type_prob`` may be asked
for by name but are not in the default set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nucscale.errors import InputError
from nucscale.features import INTENSITY, MORPHOLOGY
from nucscale.features._cellprofiler import FULL_SCHEMA
from nucscale.store import features_path, nuclei_path, read_nuclei

#: The nucleus table's measurements: the default features when there is no features table.
NUCLEUS_FEATURES: tuple[str, ...] = (*MORPHOLOGY, *INTENSITY)
#: The nucleus table's columns that may be named but are not used by default.
SEGMENTER_FEATURES: tuple[str, ...] = ("type", "type_prob")
#: The features table's columns (``--features full``).
FULL_FEATURES: tuple[str, ...] = tuple(n for n in FULL_SCHEMA.names if n != "nucleus_id")
#: Columns that identify or place a nucleus: never features.
LEAKING: frozenset[str] = frozenset(
    {
        "slide_id", "nucleus_id", "tile_row", "tile_col", "centroid_x", "centroid_y",
        "centroid_x_um", "centroid_y_um", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
        "geometry", "type_name",
    }
)  # fmt: skip
FEATURE_SETS = ("morphology", "full")


def _has_full(out: Path, slide_ids: Sequence[str]) -> list[Path]:
    """The features tables of ``slide_ids`` that are missing."""
    return [p for p in (features_path(out, s) for s in slide_ids) if not p.exists()]


def choose_features(
    out: Path,
    slide_ids: Sequence[str],
    columns: Sequence[str] | None = None,
    feature_set: str | None = None,
) -> list[str]:
    """The feature columns of a model trained on ``slide_ids`` of ``out``.

    ``columns`` names them; else ``feature_set`` ``morphology`` (the nucleus table's
    measurements) or ``full`` (those and the features table's columns); else ``full`` when
    every slide has a features table, ``morphology`` otherwise.

    Raises
    ------
    InputError
        A column that is unknown, not numeric, or identifies or places a nucleus; ``full``
        columns for a slide without a features table.
    """
    if columns is not None and feature_set is not None:
        raise InputError(out, "give either feature columns or a feature set, not both")
    if columns is not None:
        chosen = list(dict.fromkeys(c.strip() for c in columns if c.strip()))
        if not chosen:
            raise InputError(out, "no feature columns given")
        for c in chosen:
            if c in LEAKING:
                raise InputError(out, f"column {c!r} identifies or places a nucleus; not a feature")
            if c not in (*NUCLEUS_FEATURES, *SEGMENTER_FEATURES, *FULL_FEATURES):
                raise InputError(
                    out,
                    f"column {c!r} is not a numeric column of the nucleus or features table "
                    "(docs/schema.md lists them)",
                )
        if any(c in FULL_FEATURES for c in chosen):
            check_full(out, slide_ids)
        return chosen
    if feature_set is not None and feature_set not in FEATURE_SETS:
        raise InputError(out, f"feature set {feature_set!r}: choose morphology or full")
    if feature_set == "full" or (feature_set is None and not _has_full(out, slide_ids)):
        check_full(out, slide_ids)
        return [*NUCLEUS_FEATURES, *FULL_FEATURES]
    return list(NUCLEUS_FEATURES)


def check_full(out: Path, slide_ids: Sequence[str]) -> None:
    """:class:`InputError` naming the first slide of ``slide_ids`` without a features table."""
    missing = _has_full(out, slide_ids)
    if missing:
        raise InputError(
            missing[0],
            "no features table: the columns asked for come from nucscale run --features full",
        )


def check_columns(out: Path, slide_id: str, columns: Sequence[str]) -> None:
    """:class:`InputError` naming the table of the slide that lacks one of ``columns``."""
    own = [c for c in columns if c not in FULL_FEATURES]
    names = set(pq.read_schema(nuclei_path(out, slide_id)).names) | set(SEGMENTER_FEATURES)
    lacking = [c for c in own if c not in names]
    if lacking:
        raise InputError(nuclei_path(out, slide_id), f"no column {lacking[0]!r}")
    full = [c for c in columns if c in FULL_FEATURES]
    if full:
        path = features_path(out, slide_id)
        if not path.exists():
            raise InputError(path, "no features table (run the slide with --features full)")
        have = set(pq.read_schema(path).names)
        lacking = [c for c in full if c not in have]
        if lacking:
            raise InputError(path, f"no column {lacking[0]!r}")


def slide_matrix(out: Path, slide_id: str, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every nucleus of a slide: its ``nucleus_id`` (nucleus table order) and its features
    (float64, one column per entry of ``columns``; infinities become NaN, which the
    classifiers take as missing)."""
    check_columns(out, slide_id, columns)
    own = [c for c in columns if c not in FULL_FEATURES]
    nuclei = read_nuclei(nuclei_path(out, slide_id), columns=["nucleus_id", *own])
    ids = nuclei.column("nucleus_id").to_numpy()
    frame = pd.DataFrame({c: nuclei.column(c).to_numpy() for c in own}, index=ids)
    full = [c for c in columns if c in FULL_FEATURES]
    if full:
        path = features_path(out, slide_id)
        table = pq.read_table(path, columns=["nucleus_id", *full]).to_pandas()
        table = table.set_index("nucleus_id")
        if not table.index.is_unique or not table.index.isin(ids).all() or len(table) != len(ids):
            raise InputError(
                path, "its nucleus ids differ from the nucleus table's; re-run the slide"
            )
        frame = frame.join(table[full])
    x = frame[list(columns)].to_numpy(dtype=np.float64, copy=True)
    x[~np.isfinite(x)] = np.nan
    return ids, x


def feature_matrix(out: Path, rows: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The features of the nuclei ``rows`` (columns ``slide_id``, ``nucleus_id``), in their
    order; :class:`InputError` for a nucleus id that is not in its slide's table."""
    x = np.empty((len(rows), len(columns)), np.float64)
    sids = rows["slide_id"].astype(str).to_numpy()
    nids = rows["nucleus_id"].to_numpy(dtype=np.int64)
    for sid in sorted(set(sids)):
        pos = np.flatnonzero(sids == sid)
        ids, values = slide_matrix(out, sid, columns)
        where = pd.Index(ids).get_indexer(nids[pos])
        if (where < 0).any():
            bad = nids[pos][where < 0]
            raise InputError(
                nuclei_path(out, sid),
                f"{len(bad)} nucleus id(s) not in this table (first: {int(bad[0])})",
            )
        x[pos] = values[where]
    return x
