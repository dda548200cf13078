"""The per-slide nucleus table: ``OUT/nuclei/slide_id=<id>/part-0.parquet``.

One file per slide in hive layout, schema :data:`nucscale.features.NUCLEUS_SCHEMA`, one row
group per tile in (tile_row, tile_col) order (so filters on tile or bbox columns skip row groups
by their statistics), provenance as ``nucscale.*`` key-value metadata, and GeoParquet 1.1
metadata (``geo``) for the ``geometry`` column, so ``geopandas.read_parquet`` and DuckDB's
spatial extension read the outlines directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nucscale.errors import InputError, NucscaleError
from nucscale.features import GEOMETRY, KNOWN_VERSIONS, NUCLEUS_SCHEMA, SCHEMA_VERSION
from nucscale.store._atomic import atomic_write
from nucscale.store._ids import check_slide_id

METADATA_PREFIX = "nucscale."
GEOPARQUET_VERSION = "1.1.0"


class SchemaVersionError(NucscaleError, ValueError):
    """A nucleus table written by a nucscale this one cannot read."""

    def __init__(self, path: str | Path, version: str | None) -> None:
        self.path, self.version = str(path), version
        what = "no nucscale schema version" if version is None else f"schema version {version!r}"
        super().__init__(
            f"{path}: {what}; this nucscale reads versions {', '.join(KNOWN_VERSIONS)} "
            "(upgrade nucscale to read newer tables, or re-run the slide)"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        return (type(self), (self.path, self.version))


def nuclei_path(out: Path, slide_id: str) -> Path:
    """``OUT/nuclei/slide_id=<id>/part-0.parquet``; :class:`InputError` for an id that could
    name a path outside it (:func:`check_slide_id`)."""
    check_slide_id(slide_id, out)
    return Path(out) / "nuclei" / f"slide_id={slide_id}" / "part-0.parquet"


def features_path(out: Path, slide_id: str) -> Path:
    """``OUT/features/slide_id=<id>/part-0.parquet``: the slide's ``--features full`` table
    (one row per nucleus, joined to the nucleus table by ``nucleus_id``)."""
    check_slide_id(slide_id, out)
    return Path(out) / "features" / f"slide_id={slide_id}" / "part-0.parquet"


def geo_metadata(bbox: Sequence[float] | None) -> dict[str, Any]:
    """GeoParquet 1.1 file metadata for the ``geometry`` column.

    ``crs`` is null: the coordinates are level-0 pixels of the slide, an engineering frame with
    no geographic meaning (GeoParquet: "null indicates an undefined CRS").
    """
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon", "MultiPolygon"],
        "crs": None,
        "edges": "planar",
        "orientation": "counterclockwise",
    }
    if bbox is not None:
        column["bbox"] = [float(v) for v in bbox]
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": GEOMETRY,
        "columns": {GEOMETRY: column},
    }


def with_metadata(
    schema: pa.Schema, metadata: Mapping[str, str], bbox: Sequence[float] | None = None
) -> pa.Schema:
    """``schema`` with ``nucscale.*`` key-value metadata (schema version always included) and
    the GeoParquet ``geo`` key."""
    kv = {f"{METADATA_PREFIX}{k}": str(v) for k, v in metadata.items()}
    kv[f"{METADATA_PREFIX}schema_version"] = SCHEMA_VERSION
    kv["geo"] = json.dumps(geo_metadata(bbox))
    return schema.with_metadata(kv)


def write_nuclei(
    path: Path,
    fragments: Iterable[pa.Table],
    metadata: Mapping[str, str],
    bbox: Sequence[float] | None = None,
) -> int:
    """Write tile fragments (already in tile order) atomically; returns the number of rows.

    ``bbox`` (x0, y0, x1, y1 of all nuclei, level-0 px) goes into the GeoParquet metadata.
    """
    schema = with_metadata(NUCLEUS_SCHEMA, metadata, bbox)
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for frag in fragments:
                if frag.num_rows:
                    writer.write_table(frag.select(schema.names).cast(schema))
                    rows += frag.num_rows
            if rows == 0:
                writer.write_table(schema.empty_table())

    atomic_write(path, write)
    return rows


def read_metadata(path: Path) -> dict[str, str]:
    """The ``nucscale.*`` key-value metadata of a nucleus table, without the prefix; a missing
    or unreadable table is an :class:`InputError` naming it (never pyarrow's traceback)."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise InputError(path, "nucleus table missing; re-run the slide") from None
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            path, f"not a readable nucleus table ({first}); re-run the slide"
        ) from None
    return {
        k.decode()[len(METADATA_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode().startswith(METADATA_PREFIX)
    }


def schema_version(path: Path) -> str:
    """The schema version of the nucleus table at ``path``, checked to be one this nucscale
    reads; :class:`SchemaVersionError` otherwise (naming the file and the versions known)."""
    version = read_metadata(path).get("schema_version")
    if version not in KNOWN_VERSIONS:
        raise SchemaVersionError(path, version)
    return version


def read_nuclei(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A nucleus table in the current schema, whichever known version wrote it.

    Version 1 tables (before outlines) get a null ``geometry`` column. Unknown versions raise
    :class:`SchemaVersionError`.
    """
    version = schema_version(path)
    if version == "1":
        wanted = [c for c in (columns or NUCLEUS_SCHEMA.names) if c != GEOMETRY]
        table = pq.read_table(path, columns=wanted)
        if columns is None or GEOMETRY in columns:
            table = table.append_column(
                pa.field(GEOMETRY, pa.binary()), pa.nulls(table.num_rows, pa.binary())
            )
        return table.select(list(columns)) if columns is not None else table
    return pq.read_table(path, columns=list(columns) if columns is not None else None)
