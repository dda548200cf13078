"""What SQL over the results may touch: the views ``nuclei``, ``slides``, ``features``,
``regions`` and ``mammograms``, nothing else.

:class:`~nucscale.query.Results` registers the views as pyarrow datasets over the finished
slides' tables and the cohort table (pyarrow reads those files; DuckDB scans the Arrow
batches), then :func:`confine` turns DuckDB's own file and network access off and locks the
configuration. From then on no statement can read, list or write a file or reach the network
(``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH``, ``INSTALL``, ``EXPLAIN ANALYZE COPY``,
``https://`` paths all fail), and no ``SET`` can undo it.

Why not ``allowed_paths`` / ``allowed_directories`` over ``OUT``'s tables: DuckDB grants those
paths for writing as well as reading (``COPY ... TO '<table>' (USE_TMP_FILE false)`` overwrote a
result table in the experiment), and a statement filter can be bypassed (``EXPLAIN ANALYZE``
runs the ``COPY`` it explains, ``PREPARE``/``EXECUTE`` hides it). With no file access at all the
question does not arise; the price is that the Python process, not DuckDB, reads the Parquet
files (measured on two 500,000-nucleus slides: aggregates and bbox filters as fast, a query
touching every outline about 3x slower).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from nucscale.errors import QueryRefusedError, first_line

_LOCKED = "the configuration has been locked"


def confine(con: duckdb.DuckDBPyConnection) -> None:
    """Turn off DuckDB's file and network access on ``con`` and lock its configuration."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def refusal(exc: duckdb.Error, out: Path) -> QueryRefusedError | None:
    """The :class:`QueryRefusedError` for a DuckDB error raised by the confinement, else None."""
    text = first_line(exc)
    if not isinstance(exc, duckdb.PermissionException) and _LOCKED not in text:
        return None
    text = text.removeprefix("Permission Error: ").removeprefix("Invalid Input Error: ")
    return QueryRefusedError(
        out,
        f"query refused: {text}; queries read only the views nuclei, slides, features, "
        "regions and mammograms (no other "
        "file, no network, no settings); save a result with --to FILE or Results.write",
    )
