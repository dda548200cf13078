"""The ``nucscale`` command line (typer); one module per command."""

from nucscale.cli._app import app, main

__all__ = ["app", "main"]
