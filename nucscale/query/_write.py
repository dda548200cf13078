"""Writing a query's result to a file the user names (``nucscale query --to``,
:meth:`Results.write`).

The DuckDB connection over the results has no file access (:mod:`nucscale.query._confine`), so
DuckDB cannot ``COPY`` a result anywhere; Python writes it instead, streaming Arrow record
batches, under a temporary name renamed when complete (a failed write leaves no partial file).

- CSV: columns a CSV cell cannot hold as they are (outlines, lists, maps, dates, ...) are
  turned into DuckDB's own text for them first (an outline becomes WKT), so the file reads the
  same as DuckDB's ``COPY ... (FORMAT csv)`` would.
- Parquet: the Arrow types as they are; ``GEOMETRY`` columns are WKB with GeoParquet ``geo``
  metadata, so geopandas and DuckDB read them as geometries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nucscale.store import atomic_write
from nucscale.store._parquet import GEOPARQUET_VERSION

#: Result formats :func:`write_relation` writes.
RESULT_FORMATS = ("csv", "parquet")
_BATCH = 65536
#: DuckDB types a CSV cell holds as they are; every other column is cast to text by DuckDB.
_CSV_NATIVE = frozenset(
    {
        "boolean", "tinyint", "smallint", "integer", "bigint", "utinyint", "usmallint",
        "uinteger", "ubigint", "float", "double", "varchar",
    }
)  # fmt: skip


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(rel: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    if hasattr(rel, "to_arrow_reader"):  # DuckDB >= 1.4
        return rel.to_arrow_reader(_BATCH)
    return rel.fetch_record_batch(_BATCH)


def _as_csv_text(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``rel`` with every column a CSV cell cannot hold cast to DuckDB's text for it."""
    kinds = [t.id for t in rel.types]
    if all(k in _CSV_NATIVE for k in kinds):
        return rel
    exprs = [
        _quoted(c) if k in _CSV_NATIVE else f"CAST({_quoted(c)} AS VARCHAR) AS {_quoted(c)}"
        for c, k in zip(rel.columns, kinds, strict=True)
    ]
    return rel.project(", ".join(exprs))


def _geo_schema(rel: duckdb.DuckDBPyRelation, schema: pa.Schema) -> pa.Schema:
    """``schema`` with GeoParquet metadata naming the ``GEOMETRY`` columns of ``rel``."""
    geo = [c for c, t in zip(rel.columns, rel.types, strict=True) if t.id == "geometry"]
    if not geo:
        return schema
    meta: dict[str, Any] = {
        "version": GEOPARQUET_VERSION,
        "primary_column": geo[0],
        "columns": {c: {"encoding": "WKB", "geometry_types": [], "crs": None} for c in geo},
    }
    return schema.with_metadata({**(schema.metadata or {}), b"geo": json.dumps(meta).encode()})


def write_relation(rel: duckdb.DuckDBPyRelation, dest: Path, fmt: str) -> int:
    """Write the rows of ``rel`` to ``dest`` as ``fmt`` (``csv`` or ``parquet``); returns the
    number of rows. OS errors become :class:`~nucscale.errors.OutputError` naming ``dest``."""
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"unknown result format {fmt!r}; choose one of {RESULT_FORMATS}")
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        if fmt == "csv":
            reader = _reader(_as_csv_text(rel))
            options = pacsv.WriteOptions(quoting_style="needed")
            with pacsv.CSVWriter(str(tmp), reader.schema, write_options=options) as csv:
                for batch in reader:
                    csv.write_batch(batch)
                    rows += batch.num_rows
        else:
            reader = _reader(rel)
            schema = _geo_schema(rel, reader.schema)
            with pq.ParquetWriter(str(tmp), schema, compression="zstd") as parquet:
                for batch in reader:
                    parquet.write_batch(batch.replace_schema_metadata(schema.metadata))
                    rows += batch.num_rows

    atomic_write(Path(dest), write)
    return rows
