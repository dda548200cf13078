"""nucscale: every nucleus in whole cohorts of pathology slides, on a Dask cluster."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nucscale")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
