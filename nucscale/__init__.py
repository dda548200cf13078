"""nucscale: every nucleus in whole cohorts of pathology slides, on a Dask cluster."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nucscale.query import Results

try:
    __version__ = version("nucscale")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "open_results"]


def open_results(out: Any) -> "Results":
    """Open the outputs of ``nucscale run --out OUT`` for querying; see
    :func:`nucscale.query.open_results` (imported on first use: DuckDB loads only when needed)."""
    from nucscale.query import open_results as _open

    return _open(out)
