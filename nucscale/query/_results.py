"""The results of a run, opened for questions: :func:`open_results`.

A thin adapter over pyarrow datasets and DuckDB: the nucleus tables of every slide read as one
dataset with ``slide_id`` from the hive partition, the cohort table beside it, and a DuckDB
connection with the views ``nuclei`` and ``slides`` (and ``features``, ``classes``,
``regions``, ``mammograms`` where the run or later commands wrote them). DuckDB's spatial
extension is loaded when available (installed in DuckDB's extension folder, or the
``duckdb-extension-spatial`` wheel of the same version), so ``ST_*`` functions work;
``geometry`` is a ``GEOMETRY`` (DuckDB >= 1.5, or with the extension loaded), otherwise the WKB
``BLOB``.

The connection is confined (:mod:`nucscale.query._confine`): the views are pyarrow datasets,
DuckDB has no file or network access of its own and its configuration is locked, so SQL given
to :meth:`Results.sql` or ``nucscale query`` reads the results and nothing else. Every slide id
that names a path is checked by :func:`nucscale.store.check_slide_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import zarr

from nucscale.errors import InputError
from nucscale.features import GEOMETRY, NUCLEUS_SCHEMA
from nucscale.query._confine import confine, refusal
from nucscale.query._write import RESULT_FORMATS, write_relation
from nucscale.store import (
    classes_schema,
    nuclei_path,
    open_labels,
    read_manifest,
    schema_version,
    slides_path,
    write_slides_table,
)

log = logging.getLogger(__name__)

#: The dataset's schema: the nucleus table plus the hive partition column.
DATASET_SCHEMA = NUCLEUS_SCHEMA.append(pa.field("slide_id", pa.string()))
#: The schema DuckDB scans: the outline marked as GeoArrow WKB, so DuckDB sees a geometry.
_GEO = DATASET_SCHEMA.get_field_index(GEOMETRY)
_DUCKDB_SCHEMA = DATASET_SCHEMA.set(
    _GEO,
    DATASET_SCHEMA.field(_GEO).with_metadata(
        {"ARROW:extension:name": "geoarrow.wkb", "ARROW:extension:metadata": "{}"}
    ),
)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def load_spatial(con: duckdb.DuckDBPyConnection) -> bool:
    """Load DuckDB's spatial extension without network access; whether it is loaded."""
    try:
        con.execute("LOAD spatial")
        return True
    except duckdb.Error:
        pass
    try:
        import duckdb_extension_spatial
    except ImportError:
        return False
    ext = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "spatial.duckdb_extension"
    )
    if not ext.exists():
        log.info("duckdb-extension-spatial has no build for DuckDB %s", duckdb.__version__)
        return False
    try:
        con.execute(f"LOAD {_sql_string(str(ext))}")
        return True
    except duckdb.Error as exc:
        log.info("could not load %s: %s", ext, exc)
        return False


class Results:
    """The outputs of ``nucscale run`` in ``out``. See :func:`open_results`."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self._spatial = False  # set when the DuckDB connection is made
        if not any((self.out / n).exists() for n in ("manifest.parquet", "mammograms.parquet")):
            raise InputError(self.out, "not a nucscale output folder (no manifest.parquet)")

    # --- files -------------------------------------------------------------------------------
    def slide_ids(self, status: str | None = "done") -> list[str]:
        """Slide ids in the manifest (only those with ``status``; ``None``: all)."""
        rows = read_manifest(self.out).values()
        return sorted({r.slide_id for r in rows if status is None or r.status == status})

    def table_path(self, slide_id: str) -> Path:
        """The nucleus table of a finished slide; :class:`InputError` if it has none."""
        path = nuclei_path(self.out, slide_id)
        if not path.exists():
            raise InputError(path, f"no nucleus table for slide {slide_id!r} (not run, or failed)")
        return path

    def tables(self) -> list[Path]:
        """The nucleus tables of every finished slide, each checked for a readable version."""
        paths = [nuclei_path(self.out, s) for s in self.slide_ids()]
        paths = [p for p in paths if p.exists()]
        for p in paths:
            schema_version(p)
        return paths

    # --- pyarrow / pandas --------------------------------------------------------------------
    def _dataset(self, schema: pa.Schema) -> ds.Dataset:
        partitioning = ds.partitioning(pa.schema([("slide_id", pa.string())]), flavor="hive")
        return ds.dataset(
            [str(p) for p in self.tables()],
            schema=schema,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=str(self.out / "nuclei"),
        )

    @cached_property
    def dataset(self) -> ds.Dataset:
        """All nucleus tables as one pyarrow dataset (``slide_id`` from the partition)."""
        return self._dataset(DATASET_SCHEMA)

    def to_pandas(
        self, filter: ds.Expression | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Nuclei matching ``filter`` (a pyarrow expression, e.g. ``ds.field("area") > 40``) as
        a DataFrame, reading only ``columns``; row groups whose statistics exclude the filter
        are skipped."""
        cols = list(columns) if columns is not None else None
        return self.dataset.to_table(filter=filter, columns=cols).to_pandas()

    def slides(self) -> pd.DataFrame:
        """The cohort table (rebuilt from the manifest if it is missing)."""
        path = slides_path(self.out)
        if not path.exists():
            write_slides_table(self.out, read_manifest(self.out).values())
        return pd.read_parquet(path)

    def labels(self, slide_id: str, level: int = 0) -> zarr.Array:
        """The label image of a slide at pyramid ``level`` (read-only Zarr array)."""
        return open_labels(self.out, slide_id, level)

    # --- DuckDB ------------------------------------------------------------------------------
    @cached_property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with views ``nuclei``, ``slides``, ``features``
        (``--features full``), ``classes`` (``nucscale classify predict``), ``regions`` and
        ``mammograms`` (mammogram masses, :mod:`nucscale.store._mammograms`), confined to
        them: no file or network access, configuration locked (module docstring)."""
        con = duckdb.connect()
        try:
            self._spatial = load_spatial(con)
            con.register("_nuclei", self._dataset(_DUCKDB_SCHEMA))
            kind = con.sql(f"SELECT {GEOMETRY} FROM _nuclei LIMIT 0").types[0].id
            if kind == "blob" and self._spatial:  # DuckDB < 1.5 reads GeoArrow WKB as a BLOB
                con.execute(
                    "CREATE VIEW nuclei AS SELECT * REPLACE "
                    f"(ST_GeomFromWKB({GEOMETRY}) AS {GEOMETRY}) FROM _nuclei"
                )
            else:
                con.execute("CREATE VIEW nuclei AS SELECT * FROM _nuclei")
            self.slides()  # make sure the file exists
            con.register("_slides", ds.dataset(str(slides_path(self.out)), format="parquet"))
            con.execute("CREATE VIEW slides AS SELECT * FROM _slides")
            for view, dataset in self._other_datasets().items():
                con.register(f"_{view}", dataset)
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM _{view}")
            confine(con)
        except BaseException:
            con.close()
            raise
        return con

    def _other_datasets(self) -> dict[str, ds.Dataset]:
        """``features`` (``--features full``: one row per nucleus, ``slide_id`` from the
        partition), ``classes`` (likewise, :func:`_classes_dataset`), ``regions`` (every
        mammogram's region table) and ``mammograms`` (one row each), as datasets; empty ones
        when the run wrote none."""
        from nucscale.features._cellprofiler import FULL_SCHEMA
        from nucscale.store._mammograms import (
            MAMMOGRAMS_SCHEMA,
            REGIONS_SCHEMA,
            mammograms_table_path,
        )

        regions = sorted(str(p) for p in (self.out / "regions").glob("*.parquet"))
        table = mammograms_table_path(self.out)
        features = sorted(str(p) for p in (self.out / "features").glob("slide_id=*/*.parquet"))
        partitioning = ds.partitioning(pa.schema([("slide_id", pa.string())]), flavor="hive")
        return {
            "features": ds.dataset(
                features,
                schema=FULL_SCHEMA.append(pa.field("slide_id", pa.string())),
                format="parquet",
                partitioning=partitioning,
                partition_base_dir=str(self.out / "features"),
            ),
            "classes": _classes_dataset(self.out),
            "regions": ds.dataset(regions, schema=REGIONS_SCHEMA, format="parquet"),
            "mammograms": ds.dataset(
                [str(table)] if table.exists() else [], schema=MAMMOGRAMS_SCHEMA, format="parquet"
            ),
        }

    @property
    def spatial(self) -> bool:
        """Whether DuckDB's spatial extension is loaded (``geometry`` is a ``GEOMETRY``)."""
        _ = self.connection
        return self._spatial

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """Run ``query`` over the views ``nuclei`` and ``slides``; a DuckDB relation
        (``.df()``, ``.arrow()``, ``.fetchall()``...), or None for a statement without rows.

        The query reads the views and nothing else: a statement that reads, lists or writes a
        file, reaches the network or changes a setting raises
        :class:`~nucscale.errors.QueryRefusedError`. To save a result use :meth:`write`.
        """
        try:
            return self.connection.sql(query)
        except duckdb.Error as exc:
            refused = refusal(exc, self.out)
            if refused is None:
                raise
            raise refused from None

    def write(self, query: str, dest: str | Path, format: str | None = None) -> int:
        """Write the result of ``query`` to ``dest`` as CSV or Parquet (``format``, default
        from the suffix), written by Python under a temporary name; returns the rows written."""
        dest = Path(dest)
        fmt = format or dest.suffix.lstrip(".").lower()
        if fmt not in RESULT_FORMATS:
            raise InputError(dest, "write csv or parquet (or name the file .csv/.parquet)")
        rel = self.sql(query)
        if rel is None:
            raise InputError(dest, "the statement returns no rows to write")
        return write_relation(rel, dest, fmt)

    def nuclei(self) -> duckdb.DuckDBPyRelation:
        """The ``nuclei`` view as a DuckDB relation."""
        return self.connection.table("nuclei")

    def close(self) -> None:
        if "connection" in self.__dict__:
            self.connection.close()
            del self.__dict__["connection"]

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Results({str(self.out)!r}, slides={len(self.slide_ids())})"


def _classes_dataset(out: Path) -> ds.Dataset:
    """The class tables of ``nucscale classify predict`` (``slide_id`` from the partition); their
    schemas unified, so slides predicted by models of other classes read as one view (a class a
    slide's model lacks is null there)."""
    files = sorted(str(p) for p in (out / "classes").glob("slide_id=*/part-0.parquet"))
    schema = classes_schema([])
    if files:
        schema = pa.unify_schemas([pq.read_schema(f).remove_metadata() for f in files])
    partitioning = ds.partitioning(pa.schema([("slide_id", pa.string())]), flavor="hive")
    return ds.dataset(
        files,
        schema=schema.append(pa.field("slide_id", pa.string())),
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(out / "classes"),
    )


def open_results(out: str | Path) -> Results:
    """Open the outputs of ``nucscale run --out OUT`` for querying.

    >>> res = open_results("out")                                       # doctest: +SKIP
    >>> res.sql("SELECT slide_id, count(*) FROM nuclei GROUP BY ALL").df()  # doctest: +SKIP
    >>> res.to_pandas(ds.field("area") > 40, columns=["slide_id", "area"])  # doctest: +SKIP
    """
    return Results(out)
