"""Keep a bad slide's reason to one line: no worker traceback for nucscale's own errors.

A task that raises (say, a slide whose channels no rule decides) is reported by the cohort once,
as one line naming the file and the reason, in the console table and the manifest. Dask's worker
would also log it, with the task, its key and the whole traceback, once per retry, on the
console of a local cluster or of every ``dask worker``. :class:`QuietInputErrors` is a worker
plugin that drops exactly those "Compute Failed" records whose exception is one of nucscale's
error types (:mod:`nucscale.errors`); anything else (a bug, a lost worker) is still logged.
"""

from __future__ import annotations

import logging

from distributed import WorkerPlugin

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


class QuietInputErrors(WorkerPlugin):
    """Installs :class:`_DropOwnErrors` on the worker's ``distributed.worker`` logger."""

    name = "nucscale-quiet-input-errors"

    def setup(self, worker: object) -> None:
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _DropOwnErrors) for f in logger.filters):
            logger.addFilter(_DropOwnErrors())
