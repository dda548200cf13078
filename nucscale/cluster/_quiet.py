"""Keep a bad slide's reason to one line: no worker traceback for nucscale's own errors.

A task that raises (say, a slide whose channels no rule decides) is reported by the cohort once,
as one line naming the file and the reason, in the console table and the manifest. Dask's worker
would also log it, with the task, its key and the whole traceback, once per retry, on the
console of a local cluster or of every ``dask worker``. :class:`QuietInputErrors` is a worker
plugin that drops exactly those "Compute Failed" records whose exception is one of nucscale's
error types (:mod:`nucscale.errors`); anything else (a bug, a lost worker) is still logged.

A worker whose heartbeat finds the scheduler's connection closed logs "Failed to communicate
with scheduler during heartbeat." with the traceback of the closed stream. At the end of a run
that is the cluster closing (the scheduler went first): :class:`_OneLineHeartbeat` drops the
record once the worker itself is closing, and otherwise keeps it as one line naming the error
(seen once, in a full test run on a loaded machine, amid a successful archive run's output).
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import WorkerPlugin
from distributed.core import Status

from nucscale import errors

#: The names a nucscale error's repr starts with (``SlideFormatError('...')``).
_OWN = tuple(
    name
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.NucscaleError)
)


class _DropOwnErrors(logging.Filter):
    """False for a worker's "Compute Failed" record of a nucscale error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[3]) if len(args) > 3 else ""
        return not text.lstrip("'\"").startswith(tuple(f"{n}(" for n in _OWN))


_HEARTBEAT = "Failed to communicate with scheduler during heartbeat"
_CLOSING = (Status.closing, Status.closing_gracefully, Status.closed, Status.failed)


class _OneLineHeartbeat(logging.Filter):
    """A failed heartbeat: dropped while ``worker`` closes, else one line without traceback."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_HEARTBEAT):
            return True
        if getattr(self.worker, "status", None) in _CLOSING:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{_HEARTBEAT}: %s: %s"
            record.args = (type(exc).__name__, errors.first_line(exc))
        record.exc_info, record.exc_text = None, None
        return True


class QuietInputErrors(WorkerPlugin):
    """Installs :class:`_DropOwnErrors` and :class:`_OneLineHeartbeat` on the worker's
    ``distributed.worker`` logger."""

    name = "nucscale-quiet-input-errors"

    def setup(self, worker: object) -> None:
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _DropOwnErrors) for f in logger.filters):
            logger.addFilter(_DropOwnErrors())
        for f in [f for f in logger.filters if isinstance(f, _OneLineHeartbeat)]:
            logger.removeFilter(f)  # a worker process runs one worker: the newest is it
        logger.addFilter(_OneLineHeartbeat(worker))
