"""Querying results: :func:`open_results` (pyarrow dataset, pandas, DuckDB with views
``nuclei`` and ``slides``)."""

from nucscale.query._results import DATASET_SCHEMA, Results, load_spatial, open_results

__all__ = ["DATASET_SCHEMA", "Results", "load_spatial", "open_results"]
