"""One exception hierarchy for nucscale.

Every class also inherits the builtin a caller would naturally catch (``FileNotFoundError``,
``ValueError``, ``OSError``), so ``except ValueError`` keeps working. Messages always start with
the offending file (when there is one) and say what to do::

    SlideFormatError: slide.svs: no pixel size in metadata; pass --mpp
"""

from __future__ import annotations

from os import PathLike


def first_line(exc: BaseException) -> str:
    """The first line of a library exception's message (its name when it has none), for
    one-line errors: torch's unpickling errors, for one, go on for ten lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NucscaleError(Exception):
    """Base class of every error nucscale raises on purpose."""


class _PathError(NucscaleError):
    """An error about one file; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep the (path, reason) signature when the error crosses a Dask process boundary.
        return (type(self), (self.path, self.reason))


class SlideNotFoundError(_PathError, FileNotFoundError):
    """The slide path does not exist."""


class SlideFormatError(_PathError, ValueError):
    """The file is not a slide or image nucscale can read (empty, truncated, unknown format)."""


class SlideReadError(_PathError, OSError):
    """The slide opened but its pixels could not be decoded (corrupt tiles, I/O error)."""


class MissingPixelSizeError(_PathError, ValueError):
    """The slide has no pixel size and none was given."""


class InputError(_PathError, ValueError):
    """A submission input (manifest, slide id, option) is invalid."""


class OutputError(_PathError, OSError):
    """Writing results failed (disk full, permission denied, path outside --out)."""


class QueryRefusedError(_PathError, PermissionError):
    """A query over the results tried to reach beyond them (a file outside the output folder,
    writing a file, a setting); ``path`` is the output folder."""


class ConfigError(NucscaleError, ValueError):
    """A setting is invalid."""


class SegmenterError(NucscaleError, ValueError):
    """A segmenter name or its parameters are invalid."""


#: Errors that describe the input itself (a missing, empty, truncated, unknown or corrupt file, a
#: slide without a pixel size, an invalid manifest row): the same input fails the same way on
#: any worker, so a task that meets one is not retried (:mod:`nucscale.pipeline._guard`).
#: :class:`OutputError` is not among them: a full disk or a network file system may recover.
INPUT_ERRORS: tuple[type[NucscaleError], ...] = (
    SlideNotFoundError,
    SlideFormatError,
    SlideReadError,
    MissingPixelSizeError,
    InputError,
)
