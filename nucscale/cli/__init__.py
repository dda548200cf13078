"""The ``nucscale`` command line (typer); one module per command, all registered on import."""

from nucscale.cli import (  # noqa: F401 - registers
    _classify,
    _evaluate,
    _index,
    _info,
    _label,
    _results,
    _run,
    _train,
)
from nucscale.cli._app import app, main

__all__ = ["app", "main"]
