"""Cell-class labels: read from CSV, Parquet or QuPath GeoJSON, matched to a run's nuclei.

:func:`load_labels` gives one row per labelled nucleus, columns ``slide_id``, ``nucleus_id``
and ``label`` (:data:`LABEL_COLUMNS`), every row checked to name a nucleus of a finished slide
of ``OUT``. A table (CSV or Parquet) has those three columns; a GeoJSON file is what QuPath
gives back after importing nucscale's export and classifying objects
(:mod:`nucscale.classify._geojson`). Every refusal is one line naming the file and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nucscale.errors import InputError, NucscaleError, first_line
from nucscale.query import open_results
from nucscale.store import check_slide_id, nuclei_path, read_nuclei

LABEL_COLUMNS = ("slide_id", "nucleus_id", "label")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
GEOJSON_SUFFIXES = (".geojson", ".json")
MAX_LABEL_LENGTH = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def load_labels(path: str | Path, out: str | Path, *, keep_unchanged: bool = False) -> pd.DataFrame:
    """Labels of nuclei of ``out`` from ``path`` (CSV, Parquet or QuPath GeoJSON), checked.

    ``keep_unchanged`` (GeoJSON only): also count detections whose class is still the one
    nucscale's export gave them (see :func:`nucscale.classify.read_geojson_labels`).

    Raises
    ------
    InputError
        Unreadable file, missing columns, empty or conflicting labels, a slide or nucleus id
        that is not in ``out``, or GeoJSON objects that match no nucleus.
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise InputError(path, "label file not found")
    suffix = path.suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        from nucscale.classify._geojson import read_geojson_labels

        frame = read_geojson_labels(path, out, keep_unchanged=keep_unchanged)
    elif suffix in TABLE_SUFFIXES:
        frame = _read_table(path)
    else:
        raise InputError(path, "labels must be .csv, .parquet or QuPath .geojson")
    return check_labels(frame, path, out)


def _read_table(path: Path) -> pd.DataFrame:
    """The three label columns of a CSV or Parquet file, typed."""
    types = {"slide_id": pa.string(), "nucleus_id": pa.int64(), "label": pa.string()}
    try:
        if path.suffix.lower() == ".csv":
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable label table ({first_line(exc)})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            path, f"no column {', '.join(missing)}; a label table has slide_id, nucleus_id, label"
        )
    try:
        table = table.select(list(LABEL_COLUMNS)).cast(pa.schema(list(types.items())))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(path, f"column types: {str(exc).splitlines()[0]}") from None
    for name in LABEL_COLUMNS:
        nulls = table.column(name).null_count
        if nulls:
            raise InputError(path, f"{nulls} row(s) without a {name}")
    return table.to_pandas()


def check_labels(frame: pd.DataFrame, path: Path, out: Path) -> pd.DataFrame:
    """``frame`` (columns :data:`LABEL_COLUMNS`) validated against the nuclei of ``out``:
    labels stripped and non-empty, repeats of one label dropped, conflicting ones refused, every
    slide a finished slide of ``out`` and every nucleus id in its table."""
    frame = frame.loc[:, list(LABEL_COLUMNS)].copy()
    frame["slide_id"] = frame["slide_id"].astype(str)
    frame["nucleus_id"] = frame["nucleus_id"].astype(np.int64)
    frame["label"] = frame["label"].astype(str).str.strip()
    if frame.empty:
        raise InputError(path, "no labels")
    empty = frame["label"] == ""
    if empty.any():
        raise InputError(path, f"{int(empty.sum())} empty label(s) (first at row {_row(empty)})")
    bad = frame["label"].map(lambda s: len(s) > MAX_LABEL_LENGTH or bool(_CONTROL.search(s)))
    if bad.any():
        raise InputError(
            path,
            f"label {frame['label'][bad].iloc[0][:40]!r}: class names are at most "
            f"{MAX_LABEL_LENGTH} characters without control characters",
        )
    try:
        with open_results(out) as res:
            done = set(res.slide_ids())
    except NucscaleError as exc:
        raise InputError(path, f"cannot check the labels against {out}: {exc}") from None
    slides = sorted(set(frame["slide_id"]))
    for sid in slides:
        try:
            check_slide_id(sid, path)
        except InputError as exc:
            raise InputError(path, exc.reason) from None
        if sid not in done:
            raise InputError(path, f"slide {sid!r} is not a finished slide of {out}")
    frame = frame.drop_duplicates().reset_index(drop=True)
    twice = frame.duplicated(["slide_id", "nucleus_id"], keep=False)
    if twice.any():
        first = frame[twice].sort_values(["slide_id", "nucleus_id"]).head(2)
        sid, nid = first.iloc[0]["slide_id"], int(first.iloc[0]["nucleus_id"])
        a, b = first["label"].tolist()
        raise InputError(path, f"nucleus {nid} of slide {sid!r} is labelled both {a!r} and {b!r}")
    for sid in slides:
        ids = read_nuclei(nuclei_path(out, sid), columns=["nucleus_id"]).column("nucleus_id")
        asked = frame.loc[frame["slide_id"] == sid, "nucleus_id"].to_numpy()
        unknown = asked[~np.isin(asked, ids.to_numpy())]
        if unknown.size:
            raise InputError(
                path,
                f"{unknown.size} nucleus id(s) of slide {sid!r} are not in {out}'s nucleus "
                f"table (first: {int(unknown[0])}); were the labels made on another run?",
            )
    return frame.sort_values(["slide_id", "nucleus_id"], kind="stable").reset_index(drop=True)


def _row(mask: pd.Series) -> int:
    """1-based position of the first true entry (a data row of the file)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1
