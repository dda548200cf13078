"""Input errors travel through a slide's graph as values, so Dask does not retry them.

A task submitted with ``retries=N`` that raises is run again, up to N times, whatever it raised.
That is right for a transient fault (a network file system that hiccups, a worker short of
memory) and wrong for an input error (:data:`nucscale.errors.INPUT_ERRORS`: an empty,
truncated or corrupt file, a slide without a pixel size), which fails the same way every time:
each bad slide would cost N + 1 attempts. Dask offers no retry-on-condition, so a task is
wrapped in :class:`Guarded`, which *returns* an input error as :class:`Refused` instead of
raising it. A task that receives a :class:`Refused` argument passes it on without running, so
the refusal reaches the slide's last task, and the cohort loop, which closes the slide as
failed with that error as soon as it sees one (:func:`refused`).

Worker crashes and lost workers are unaffected: the scheduler reschedules a task whose worker
died regardless of ``retries`` (up to ``distributed.scheduler.allowed-failures``), and any
other exception is still raised, so still retried and reported as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distributed import Future

from nucscale.errors import INPUT_ERRORS, NucscaleError


@dataclass(frozen=True)
class Refused:
    """The result of a task that met an input error: the error, passed on instead of raised."""

    error: NucscaleError


class Guarded:
    """``fn`` as a task that returns input errors as :class:`Refused` (see module docstring).

    Picklable as long as ``fn`` is a module-level function (it travels by reference).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__name__ = fn.__name__  # Dask's dashboard names tasks by their function

    def __call__(self, *args: Any) -> Any:
        for arg in args:
            found = _first_refused(arg)
            if found is not None:
                return found
        try:
            return self.fn(*args)
        except INPUT_ERRORS as exc:
            return Refused(exc)

    def __repr__(self) -> str:
        return f"Guarded({self.fn.__module__}.{self.fn.__qualname__})"


def _first_refused(arg: Any) -> Refused | None:
    if isinstance(arg, Refused):
        return arg
    if isinstance(arg, list | tuple):
        return next((a for a in arg if isinstance(a, Refused)), None)
    return None


def refused(fut: Future) -> Refused | None:
    """The :class:`Refused` a finished future holds, else None; fetches the result only when
    the type the scheduler reported says it is one (tile results stay on the workers)."""
    if fut.status != "finished" or fut.type is not Refused:
        return None
    result = fut.result()
    return result if isinstance(result, Refused) else None
