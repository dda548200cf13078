"""The per-slide cell-class table: ``OUT/classes/slide_id=<id>/part-0.parquet``.

Written by ``nucscale classify predict`` (:mod:`nucscale.classify`), one row per nucleus of the
slide's nucleus table, in its order: ``nucleus_id``, ``class`` (the most probable class),
``p_<class>`` (the calibrated probability of each class of the model, in the model's class
order) and ``model_sha256`` (SHA-256 of the model file). The file's key-value metadata holds
the classes, the feature columns, the model hash and the nucleus table it was computed from
(``nuclei_settings_key``, ``nuclei_finished``): a slide re-run since then has a new nucleus
table, and :func:`read_classes` treats its classes as stale (absent) until predicted again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nucscale.errors import InputError
from nucscale.models._types import RGB, type_colour
from nucscale.store._atomic import atomic_write
from nucscale.store._ids import check_slide_id
from nucscale.store._parquet import METADATA_PREFIX, nuclei_path, read_metadata

log = logging.getLogger(__name__)

CLASSES_VERSION = "1"
CLASS = "class"
MODEL_HASH = "model_sha256"
PROB_PREFIX = "p_"


def classes_path(out: Path, slide_id: str) -> Path:
    """``OUT/classes/slide_id=<id>/part-0.parquet``; the id checked by :func:`check_slide_id`."""
    check_slide_id(slide_id, out)
    return Path(out) / "classes" / f"slide_id={slide_id}" / "part-0.parquet"


def prob_column(name: str) -> str:
    """The probability column of class ``name``: ``p_<name>``."""
    return f"{PROB_PREFIX}{name}"


def classes_schema(classes: Sequence[str]) -> pa.Schema:
    """Schema of a class table for a model with ``classes`` (in the model's order)."""
    return pa.schema(
        [
            pa.field("nucleus_id", pa.int64(), nullable=False),
            pa.field(CLASS, pa.string(), nullable=False),
            *[pa.field(prob_column(c), pa.float32(), nullable=False) for c in classes],
            pa.field(MODEL_HASH, pa.string(), nullable=False),
        ]
    )


def write_classes(path: Path, table: pa.Table, metadata: Mapping[str, str]) -> int:
    """Write ``table`` (schema of :func:`classes_schema`) atomically with ``nucscale.*``
    metadata (the classes version always included); returns the rows written."""
    kv = {f"{METADATA_PREFIX}{k}": str(v) for k, v in metadata.items()}
    kv[f"{METADATA_PREFIX}classes_version"] = CLASSES_VERSION
    table = table.replace_schema_metadata(kv)

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp, compression="zstd")

    atomic_write(path, write)
    return table.num_rows


def nuclei_stamp(out: Path, slide_id: str) -> dict[str, str]:
    """What identifies the slide's current nucleus table (its settings key and finish time);
    stored with its classes so that classes of an older table are never shown as current."""
    meta = read_metadata(nuclei_path(out, slide_id))
    return {
        "nuclei_settings_key": meta.get("settings_key", ""),
        "nuclei_finished": meta.get("finished", ""),
    }


def class_names_of(table: pa.Table) -> list[str]:
    """The classes of a class table, in the model's order: its ``p_<class>`` columns."""
    return [n[len(PROB_PREFIX) :] for n in table.column_names if n.startswith(PROB_PREFIX)]


def read_classes(out: Path, slide_id: str) -> pa.Table | None:
    """The slide's class table, or None when there is none or it was computed from an earlier
    nucleus table (logged: predict again)."""
    path = classes_path(out, slide_id)
    if not path.exists():
        return None
    meta = read_metadata(path)
    if meta.get("classes_version") != CLASSES_VERSION:
        raise InputError(
            path,
            f"class table version {meta.get('classes_version')!r}; this nucscale reads "
            f"{CLASSES_VERSION} (run nucscale classify predict again)",
        )
    stamp = nuclei_stamp(out, slide_id)
    if any(meta.get(k) != v for k, v in stamp.items()):
        log.warning(
            "%s: classes of an earlier nucleus table of slide %s, ignored; run nucscale "
            "classify predict again",
            path,
            slide_id,
        )
        return None
    return pq.read_table(path)


def class_colours(classes: Sequence[str]) -> dict[str, RGB]:
    """Overlay colour of each class (the report and the QuPath export agree): a class named
    like a released HoVer-Net type keeps its colour, the others take a fixed palette by their
    position; no two classes share a colour while the palette lasts."""
    colours: dict[str, RGB] = {}
    used: set[RGB] = set()
    for i, name in enumerate(classes):
        colour = type_colour(name, i)
        j = i
        while colour in used and j < i + 10:
            j += 1
            colour = type_colour("", j)
        colours[name] = colour
        used.add(colour)
    return colours
