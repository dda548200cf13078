"""Write-then-rename helpers: nothing partial is ever visible at a final path (invariant 4)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from nucscale.errors import OutputError


def tmp_sibling(path: Path) -> Path:
    """A unique hidden temporary name next to ``path`` (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``; on failure remove ``tmp``.

    OS errors (disk full, permission denied) become :class:`OutputError` naming ``path``.
    """
    tmp = tmp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(path, f"cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        _remove(tmp)
        raise


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``, replacing any existing ``dst`` with no partial state.

    The old ``dst`` is first renamed aside, then ``src`` renamed into place, then the old copy
    deleted; a reader sees either the old or the new tree, never a mixture.
    """
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        old = tmp_sibling(dst) if dst.exists() else None
        if old is not None:
            os.replace(dst, old)
        os.replace(src, dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise OutputError(dst, f"cannot move results into place: {exc.strerror or exc}") from exc


def _remove(path: Path) -> None:
    """Best-effort removal of a temporary file or folder; never masks the original error."""
    try:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_bytes(path: Path, data: bytes | str) -> None:
    """:func:`atomic_write` of bytes or UTF-8 text."""
    raw = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        tmp.write_bytes(raw)

    atomic_write(path, write)
