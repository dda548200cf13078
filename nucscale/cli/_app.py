"""The typer application; commands register themselves from their own modules."""

from __future__ import annotations

import gc
import logging
import os
from typing import ClassVar

import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn
from rich.text import Text

from nucscale import __version__

app = typer.Typer(
    name="nucscale",
    help="Find and measure every nucleus in whole-slide images, on a Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

#: True in the process the ``nucscale`` command runs in (:func:`main` sets it), False where a
#: caller runs :data:`app` in its own process (tests, notebooks): process-wide helpers that
#: outlive a command, such as the local workers' fork server (:mod:`nucscale.cluster._forks`),
#: start only in the command's own process.
IS_COMMAND = False

#: Redraws of a progress bar per second on a terminal (rich's default: 10). Each one builds the
#: bar's table in rich's refresh thread, which also ran with no terminal to draw on (a pipe, a
#: log file: the table built, nothing printed): 0.03 cores at 10 a second, taken from the
#: workers of a local cluster on a small machine.
PROGRESS_REFRESH = 2


def progress_bar(*columns: str | ProgressColumn) -> Progress:
    """A progress bar on the console, redrawn :data:`PROGRESS_REFRESH` times a second on a
    terminal; elsewhere drawn once, when it ends (no refresh thread)."""
    return Progress(
        *columns,
        console=console,
        transient=False,
        refresh_per_second=PROGRESS_REFRESH,
        auto_refresh=console.is_terminal,
    )


class _LineHandler(logging.Handler):
    """Each log record as one line on the console, ``error: <message>``, never broken at the
    terminal's width (the terminal wraps it), so a path in it is never split."""

    _STYLE: ClassVar[dict[str, str]] = {"ERROR": "red", "CRITICAL": "red", "WARNING": "yellow"}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname
            line = Text(f"{level.lower()}: ", style=self._STYLE.get(level, "dim"))
            line.append(self.format(record))
            console.print(line, soft_wrap=True, highlight=False)
        except Exception:  # logging must never raise
            self.handleError(record)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"nucscale {__version__}")
        raise typer.Exit()


@app.callback()
def _setup(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    if not verbose:
        # Dask's own loggers log at INFO (cluster start and stop, every connection); read when
        # distributed is first imported, which the commands do lazily, after this
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[_LineHandler()],
    )


def main() -> None:
    """Entry point of the ``nucscale`` script (the package registers the commands).

    When the command returns (or fails), the objects it made are frozen out of the garbage
    collector's reach (``gc.freeze``): the interpreter's exit then clears the modules without
    walking torch's and Dask's objects again (1.0 -> 0.33 s at the end of ``nucscale run``;
    :mod:`nucscale.cluster._exit` says what that gives up). Every output is closed by then."""
    global IS_COMMAND
    IS_COMMAND = True
    try:
        app()
    finally:
        gc.freeze()
