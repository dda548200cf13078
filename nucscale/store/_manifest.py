"""The run manifest ``OUT/manifest.parquet``: one row per slide, the source of truth for "done".

A slide is done only when its row says ``status == "done"``; the row is written after every
output of the slide is in place (invariant 4). Rows of earlier runs for other slides are kept.
Slide ids are checked (:func:`check_slide_id`) when rows are written and when they are read, so
an id in the manifest never names a path outside ``OUT``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nucscale.store._atomic import atomic_write
from nucscale.store._ids import check_slide_id

MANIFEST_SCHEMA = pa.schema(
    [
        ("slide_id", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("qc_flags", pa.string()),
        ("nuclei", pa.int64()),
        ("tissue_mm2", pa.float64()),
        ("tiles", pa.int64()),
        ("tiles_reused", pa.int64()),
        ("mpp", pa.float64()),
        ("analysis_mpp", pa.float64()),
        ("backend", pa.string()),
        ("segmenter", pa.string()),
        ("settings_key", pa.string()),
        ("started", pa.string()),
        ("finished", pa.string()),
        ("wall_s", pa.float64()),
        ("plan_s", pa.float64()),
        ("ingest_s", pa.float64()),
        ("segment_s", pa.float64()),
        ("write_s", pa.float64()),
        ("read_s", pa.float64()),
        ("model_s", pa.float64()),
        ("postprocess_s", pa.float64()),
        ("features_s", pa.float64()),
        ("fragment_s", pa.float64()),
        ("paint_s", pa.float64()),
    ]
)


@dataclass
class ManifestRow:
    """Outcome of one slide. Times are seconds; ``*_s`` stage times are summed over tasks.
    ``segment_s`` = ``read_s`` (window from the tile store) + ``model_s`` (network forward) +
    ``postprocess_s`` (maps to instances; all of a classical segmenter) + ``features_s``
    (ownership, measures, outlines) + ``fragment_s`` (writing the tile's fragment files)."""

    slide_id: str
    path: str
    status: str  # "done" | "failed"
    error: str | None = None
    qc_flags: str | None = None  # "; "-joined plausibility flags of a done slide (analysis._qc)
    nuclei: int | None = None
    tissue_mm2: float | None = None
    tiles: int | None = None
    tiles_reused: int | None = None  # segmented tiles found finished by an interrupted run
    mpp: float | None = None
    analysis_mpp: float | None = None
    backend: str | None = None
    segmenter: str | None = None
    settings_key: str | None = None
    started: str | None = None
    finished: str | None = None
    wall_s: float | None = None
    plan_s: float | None = None
    ingest_s: float | None = None
    segment_s: float | None = None
    write_s: float | None = None
    read_s: float | None = None
    model_s: float | None = None
    postprocess_s: float | None = None
    features_s: float | None = None
    fragment_s: float | None = None
    paint_s: float | None = None


def manifest_path(out: Path) -> Path:
    return out / "manifest.parquet"


def read_manifest(out: Path) -> dict[tuple[str, str], ManifestRow]:
    """Existing rows keyed by (slide id, path); empty when there is no manifest yet.

    The path is part of the key so that an input rejected for reusing another slide's id gets
    its own failed row instead of overwriting the slide that holds the id. A row whose slide id
    is not allowed (an edited manifest) is an :class:`InputError` naming the manifest.
    """
    path = manifest_path(out)
    if not path.exists():
        return {}
    names = {f.name for f in fields(ManifestRow)}
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        check_slide_id(r["slide_id"], path)
    return {
        (r["slide_id"], r["path"]): ManifestRow(**{k: v for k, v in r.items() if k in names})
        for r in rows
    }


def write_manifest(out: Path, rows: Iterable[ManifestRow]) -> None:
    """Merge ``rows`` into the manifest (same slide id and path replaced), atomically."""
    merged = read_manifest(out)
    for row in rows:
        check_slide_id(row.slide_id, manifest_path(out))
        merged[(row.slide_id, row.path)] = row
    _write_all(out, merged)


def _write_all(out: Path, merged: dict[tuple[str, str], ManifestRow]) -> None:
    table = pa.Table.from_pylist(
        [asdict(merged[k]) for k in sorted(merged)], schema=MANIFEST_SCHEMA
    )
    atomic_write(manifest_path(out), lambda tmp: pq.write_table(table, tmp))


class ManifestWriter:
    """The manifest of one run, held in memory and written in batches.

    Rewriting the whole file for every finished slide is quadratic in the cohort size (10,000
    slides: 50 million rows written). Here the file is read once and rewritten when the rows
    waiting reach ``fraction`` of all rows (so each row is written at most ``1 / fraction + 1``
    times in total: O(slides)), when ``max_wait_s`` has passed since the last write with rows
    waiting (a finished slide reaches the file within that time, so an interrupted run loses
    at most that much finished work to redo), and at :meth:`flush`. Outputs are complete
    before their row is added, so a row on disk still means "done" (invariant 4).
    """

    def __init__(
        self,
        out: Path,
        fraction: float = 0.1,
        max_wait_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = Path(out)
        self.fraction, self.max_wait_s, self._clock = fraction, max_wait_s, clock
        self.rows = read_manifest(self.out)
        self._waiting = 0
        self._last = clock()
        self.rows_written = 0  # rows written to disk in total (what the O(slides) test counts)

    def add(self, rows: Iterable[ManifestRow]) -> None:
        """Record ``rows``; write the file when the batch rule says so."""
        for row in rows:
            check_slide_id(row.slide_id, manifest_path(self.out))
            self.rows[(row.slide_id, row.path)] = row
            self._waiting += 1
        if self._waiting and (
            self._waiting >= self.fraction * len(self.rows)
            or self._clock() - self._last >= self.max_wait_s
        ):
            self.flush()

    def flush(self) -> None:
        """Write every row now (nothing happens when no row is waiting)."""
        if not self._waiting:
            return
        _write_all(self.out, self.rows)
        self.rows_written += len(self.rows)
        self._waiting, self._last = 0, self._clock()
