"""The cohort table ``OUT/slides.parquet``: one row per slide, for the questions asked per slide.

Each finished slide's nucleus table carries a summary (``nucscale.summary``, JSON: counts per
type and mean/median of the key features), computed from its tile fragments before the table is
written. The cohort table joins those summaries with the manifest (status, error, timings), so
building it reads one Parquet footer per slide, never the nuclei themselves.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nucscale.analysis._qc import QC_COLUMNS, qc_counts, qc_flags, qc_fractions
from nucscale.errors import InputError
from nucscale.store._atomic import atomic_write
from nucscale.store._manifest import ManifestRow
from nucscale.store._parquet import nuclei_path, read_metadata

#: Features summarised per slide (mean and median of each).
KEY_FEATURES = (
    "area",
    "perimeter",
    "equivalent_diameter",
    "major_axis_length",
    "minor_axis_length",
    "eccentricity",
    "solidity",
    "od_haematoxylin",
)

_BBOX = ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")
SCAN_COLUMNS = tuple(dict.fromkeys(("type_name", *KEY_FEATURES, *_BBOX, *QC_COLUMNS)))
#: QC measures copied into the cohort table (:mod:`nucscale.analysis._qc`).
QC_MEASURES = ("small_frac", "eosin_frac", "glass_frac")


_RERUN = "run the slide again to recompute it"


def slides_path(out: Path) -> Path:
    return Path(out) / "slides.parquet"


def summarize(
    paths: Sequence[Path], modality: str = "brightfield", tissue_mm2: float | None = None
) -> tuple[dict[str, Any], tuple[float, ...] | None]:
    """Summary (counts per type, mean/median of :data:`KEY_FEATURES`, QC measures and flags)
    and bounding box (x0, y0, x1, y1, level-0 px; None without nuclei) of a slide's tile
    fragment files."""
    # One fragment at a time: only the key features' values (for the medians) are kept for
    # the whole slide. Holding the whole scan table (and type names as Python strings) made a
    # 40,000² slide's summary the highest memory peak of its worker's run.
    by_type: Counter[str] = Counter()
    qc: Counter[str] = Counter()
    qc_total: Counter[str] = Counter()
    values: dict[str, list[np.ndarray]] = {name: [] for name in KEY_FEATURES}
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for path in paths:
        part = pq.read_table(path, columns=list(SCAN_COLUMNS), read_dictionary=["type_name"])
        if not part.num_rows:
            continue
        for chunk in part.column("type_name").chunks:
            by_type.update({d["values"]: d["counts"] for d in pc.value_counts(chunk).to_pylist()})
        for k, (hits, total) in qc_counts(part, modality).items():
            qc[k] += hits
            qc_total[k] += total
        for name in KEY_FEATURES:
            values[name].append(part.column(name).to_numpy().astype(np.float64))
        lo = np.minimum(lo, [part.column(c).to_numpy().min() for c in _BBOX[:2]])
        hi = np.maximum(hi, [part.column(c).to_numpy().max() for c in _BBOX[2:]])
    n = sum(by_type.values())
    if not n:
        flags = qc_flags({}, 0, tissue_mm2)
        return {"nuclei": 0, "nuclei_by_type": {}, "qc": {}, "qc_flags": flags}, None
    measures = qc_fractions({k: (qc[k], qc_total[k]) for k in qc_total})
    summary: dict[str, Any] = {
        "nuclei": n,
        "nuclei_by_type": dict(sorted(by_type.items())),
        "qc": measures,
        "qc_flags": qc_flags(measures, n, tissue_mm2),
    }
    for name, parts in values.items():
        column = np.concatenate(parts)
        parts.clear()  # one column's copies at a time
        summary[f"mean_{name}"] = float(column.mean())
        summary[f"median_{name}"] = float(np.median(column))
    return summary, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


SLIDES_SCHEMA = pa.schema(
    [
        pa.field("slide_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("nuclei", pa.int64()),
        pa.field("nuclei_by_type", pa.map_(pa.string(), pa.int64())),
        pa.field("tissue_mm2", pa.float64()),
        pa.field("nuclei_per_mm2", pa.float64()),
        pa.field("qc_flags", pa.list_(pa.string())),
        *[pa.field(name, pa.float64()) for name in QC_MEASURES],
        *[
            pa.field(f"{stat}_{name}", pa.float64())
            for name in KEY_FEATURES
            for stat in ("mean", "median")
        ],
        pa.field("mpp", pa.float64()),
        pa.field("analysis_mpp", pa.float64()),
        pa.field("vendor", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("segmenter", pa.string()),
        pa.field("tiles", pa.int64()),
        pa.field("started", pa.string()),
        pa.field("finished", pa.string()),
        pa.field("wall_s", pa.float64()),
        pa.field("plan_s", pa.float64()),
        pa.field("ingest_s", pa.float64()),
        pa.field("segment_s", pa.float64()),
        pa.field("write_s", pa.float64()),
    ]
)


def slide_row(out: Path, row: ManifestRow) -> dict[str, Any]:
    """One cohort-table row: the manifest row plus the summary in the slide's table.

    A done slide whose nucleus table is gone (deleted after the run) or cannot be read becomes
    status ``missing``, the error naming the table; the next run on the same inputs computes
    the slide again (its outputs no longer pass the resume check).
    """
    rec = {k: v for k, v in asdict(row).items() if k in SLIDES_SCHEMA.names}
    if row.status == "done":
        table = nuclei_path(out, row.slide_id)
        try:
            meta = read_metadata(table)
        except InputError as exc:  # gone, or not a Parquet table
            error = f"{table}: nucleus table missing; {_RERUN}" if not table.exists() else str(exc)
            rec.update(status="missing", error=error)
            return {name: rec.get(name) for name in SLIDES_SCHEMA.names}
        summary = json.loads(meta.get("summary", "{}"))
        rec.update(summary)
        rec.update(summary.get("qc", {}))
        rec["qc_flags"] = summary.get("qc_flags", [])
        rec["vendor"] = meta.get("vendor") or None
        by_type = summary.get("nuclei_by_type", {})
        rec["nuclei_by_type"] = sorted(by_type.items())
        if row.tissue_mm2 and row.nuclei is not None:
            rec["nuclei_per_mm2"] = row.nuclei / row.tissue_mm2
    return {name: rec.get(name) for name in SLIDES_SCHEMA.names}


def write_slides_table(out: Path, rows: Iterable[ManifestRow]) -> Path:
    """Write ``OUT/slides.parquet`` from manifest rows (one per slide id: a done row wins over
    a failed one with the same id, e.g. a rejected duplicate)."""
    best: dict[str, ManifestRow] = {}
    for row in rows:
        held = best.get(row.slide_id)
        if held is None or (held.status != "done" and row.status == "done"):
            best[row.slide_id] = row
    records = [slide_row(out, best[k]) for k in sorted(best)]
    table = pa.Table.from_pylist(records, schema=SLIDES_SCHEMA)
    path = slides_path(out)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path
