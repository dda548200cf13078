"""``nucscale index``: archives to one Parquet table, a row per file, plus the summed labels of
CBIS-DDSM mammograms in ``<INDEX>.labels/``."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom

from nucscale.archive._cbis import assign, summed_label
from nucscale.archive._schema import HEADER_COLUMNS, INDEX_SCHEMA, INDEX_VERSION
from nucscale.archive._walk import WalkCounts, index_rows, list_files
from nucscale.errors import InputError
from nucscale.store import atomic_write

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)
_META_KEY = b"nucscale_index_version"


@dataclass(frozen=True)
class IndexResult:
    """The table written and what the pass did."""

    table: pd.DataFrame
    counts: WalkCounts
    labels: int


def labels_dir(index_path: Path) -> Path:
    """``INDEX.labels/`` beside ``INDEX.parquet``: the summed mask of each full mammogram."""
    return index_path.with_name(index_path.stem + ".labels")


def read_index(path: Path) -> pd.DataFrame:
    """An index written by :func:`build_index` (another version is an InputError)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(path, f"not a readable index: {exc}") from None
    version = (table.schema.metadata or {}).get(_META_KEY)
    if version != INDEX_VERSION.encode():
        found = version.decode() if version else "none"
        raise InputError(path, f"index version {found}, this nucscale reads {INDEX_VERSION}")
    return table.to_pandas()


def build_index(
    roots: list[Path],
    out: Path,
    *,
    client: Client | None = None,
    progress: Callable[[int], None] | None = None,
) -> IndexResult:
    """Index every file under ``roots`` into ``out`` (Parquet), reusing unchanged rows of an
    index already at ``out``; write the summed labels; return the table."""
    previous = _previous(out)
    skip = {out.resolve(), labels_dir(out).resolve()}
    files = [f for f in list_files(roots) if not _inside(f, skip)]
    rows, counts = index_rows(files, previous, client=client, progress=progress)
    table = assign(_mark_duplicates(pd.DataFrame(rows, columns=list(HEADER_COLUMNS))))
    n_labels = _write_labels(table, labels_dir(out))
    written = _write(table, out)
    return IndexResult(table=written.to_pandas(), counts=counts, labels=n_labels)


def _inside(path: Path, skip: set[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == s or s in resolved.parents for s in skip)


def _previous(out: Path) -> dict[str, dict[str, Any]]:
    if not out.exists():
        return {}
    try:
        old = read_index(out)
    except InputError as exc:
        log.warning("%s; every file is read again", exc)
        return {}
    return {row["path"]: row for row in old.to_dict("records")}


def _mark_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """A second file with the same SOP Instance UID is skipped, naming the first."""
    ok = df["status"] == "ok"
    first: dict[str, str] = {}
    for i in df.index[ok]:
        uid = df.at[i, "sop_instance_uid"]
        if uid in first:
            df.at[i, "status"] = "skipped"
            df.at[i, "reason"] = f"same SOP Instance UID as {first[uid]}"
        else:
            first[uid] = df.at[i, "path"]
    return df


def _write_labels(df: pd.DataFrame, folder: Path) -> int:
    """Each full mammogram with masks: its summed label as a PNG (0 and 255) in ``folder``,
    ``<SOP Instance UID>-<hash of its masks' UIDs>.png``; rewritten only when a source changed."""
    from PIL import Image

    fulls = df[(df["role"] == "full") & (df["n_masks"].fillna(0) > 0)]
    for i, full in fulls.iterrows():
        masks = df[(df["role"] == "mask") & (df["pairs_with"] == full["sop_instance_uid"])]
        uid = full["sop_instance_uid"]
        which = hashlib.sha1(",".join(sorted(masks["sop_instance_uid"])).encode()).hexdigest()
        path = folder / f"{uid}-{which[:10]}.png"  # another set of masks, another name
        for stale in folder.glob(f"{uid}-*.png"):
            if stale != path:
                stale.unlink(missing_ok=True)
        df.at[i, "label_path"] = str(path)
        if _up_to_date(path, [full["path"], *masks["path"]]):
            continue
        arrays = [np.asarray(pydicom.dcmread(p).pixel_array) for p in masks["path"]]
        label = summed_label(arrays, (int(full["rows"]), int(full["columns"])))
        atomic_write(path, functools.partial(_save_png, Image.fromarray(label * 255)))
    return len(fulls)


def _save_png(picture: Any, path: Path) -> None:
    picture.save(path, format="PNG")


def _up_to_date(label: Path, sources: list[str]) -> bool:
    """A label written after every file it comes from was made from them (its name names the
    set of masks)."""
    try:
        written = label.stat().st_mtime_ns
        return all(Path(p).stat().st_mtime_ns < written for p in sources)
    except OSError:
        return False


def _write(df: pd.DataFrame, out: Path) -> pa.Table:
    table = pa.Table.from_pandas(df, schema=INDEX_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata({_META_KEY: INDEX_VERSION.encode()})
    atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    return table
