"""The per-slide nucleus table: ``OUT/nuclei/slide_id=<id>/part-0.parquet``.

One file per slide in hive layout, schema :data:`nucscale.features.NUCLEUS_SCHEMA`, one row
group per tile in (tile_row, tile_col) order, provenance in the key-value metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nucscale.features import NUCLEUS_SCHEMA, SCHEMA_VERSION
from nucscale.store._atomic import atomic_write

METADATA_PREFIX = "nucscale."


def nuclei_path(out: Path, slide_id: str) -> Path:
    return out / "nuclei" / f"slide_id={slide_id}" / "part-0.parquet"


def with_metadata(schema: pa.Schema, metadata: Mapping[str, str]) -> pa.Schema:
    """``schema`` with ``nucscale.*`` key-value metadata (schema version always included)."""
    kv = {f"{METADATA_PREFIX}{k}": str(v) for k, v in metadata.items()}
    kv[f"{METADATA_PREFIX}schema_version"] = SCHEMA_VERSION
    return schema.with_metadata(kv)


def write_nuclei(path: Path, fragments: Iterable[pa.Table], metadata: Mapping[str, str]) -> int:
    """Write tile fragments (already in tile order) atomically; returns the number of rows."""
    schema = with_metadata(NUCLEUS_SCHEMA, metadata)
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
    """The ``nucscale.*`` key-value metadata of a nucleus table, without the prefix."""
    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode()[len(METADATA_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode().startswith(METADATA_PREFIX)
    }
