"""Slide ids: the one rule for an id that becomes part of a path under ``OUT``.

A slide id names ``OUT/nuclei/slide_id=<id>/``, ``OUT/labels/<id>.zarr``,
``OUT/images/<id>.zarr``, ``OUT/.work/<id>/``, ``OUT/exports/<id>.*`` and the report's pictures,
and it comes back as the ``slide_id`` column decoded from the hive folder name. Every path
builder and every entry point that takes an id (CLI ``--slide``, ``open_results`` methods, the
manifest, CSV inputs) checks it with :func:`check_slide_id`, so an id can neither leave ``OUT``
nor read back as another id.

Refused, with the reason:

- ``/`` and ``\\`` (path separators) and a leading ``.`` (``.``, ``..``, hidden names): the
  id would name a path elsewhere.
- ``=``: the hive partition separator.
- ``%``: pyarrow and DuckDB URI-decode hive partition values (``slide_id=case%2041`` reads back
  as ``case 41``), while every other character reads back as written. Refusing ``%`` keeps the
  folder name equal to the id, so the mapping is the identity in both directions and folders
  written by earlier versions keep their names.
- ``*``, ``?``, ``[``, ``]``: DuckDB reads a path containing them as a glob pattern, so the
  ``nuclei`` view would read other slides' tables in place of this one's.
- control characters, the empty id and ids longer than :data:`MAX_ID_LENGTH` characters.
"""

from __future__ import annotations

import re
from os import PathLike

from nucscale.errors import InputError

#: Longest slide id (it is a file name, with room for the suffixes added to it).
MAX_ID_LENGTH = 200

_FORBIDDEN = re.compile(r"[/\\=%*?\[\]\x00-\x1f\x7f]")
_WHY = {
    "/": "'/' is a path separator",
    "\\": "'\\' is a path separator",
    "=": "'=' separates a hive partition's name from its value",
    "%": "'%' is URI-decoded in hive partition folders ('%20' would read back as ' ')",
    "*": "'*' makes DuckDB read the path as a glob pattern",
    "?": "'?' makes DuckDB read the path as a glob pattern",
    "[": "'[' makes DuckDB read the path as a glob pattern",
    "]": "']' makes DuckDB read the path as a glob pattern",
}
ALLOWED = "1 to 200 characters, no / \\ = % * ? [ ], no control characters, no leading dot"


def check_slide_id(slide_id: object, source: str | PathLike[str]) -> str:
    """Return ``slide_id`` if it is safe as a name under ``OUT``; else :class:`InputError`.

    Parameters
    ----------
    slide_id:
        The id to check (anything that is not a ``str`` is refused).
    source:
        Where the id came from (a manifest, an option, the output folder), the start of the
        error message.
    """
    if not isinstance(slide_id, str):
        raise InputError(source, f"slide id {slide_id!r} is not text; ids are {ALLOWED}")
    if not slide_id or len(slide_id) > MAX_ID_LENGTH:
        raise InputError(source, f"slide id {slide_id!r} must be {ALLOWED}")
    bad = _FORBIDDEN.search(slide_id)
    if bad is not None or slide_id.startswith("."):
        if bad is None:
            why = "a leading '.' names a hidden or parent folder"
        else:
            why = _WHY.get(bad.group(), f"{bad.group()!r} is a control character")
        raise InputError(
            source,
            f"slide id {slide_id!r} is not allowed: {why}; ids are {ALLOWED}",
        )
    return slide_id


def clean_slide_id(name: str) -> str:
    """``name`` made into a valid slide id: refused characters become ``_``, leading dots are
    dropped, the result is cut to :data:`MAX_ID_LENGTH` characters (``"slide"`` if nothing
    is left)."""
    cleaned = _FORBIDDEN.sub("_", name).lstrip(".")[:MAX_ID_LENGTH]
    return cleaned or "slide"
