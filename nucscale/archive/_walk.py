"""Walking archives and indexing their files: in this process for small archives, as Dask tasks
for large ones; files unchanged since a previous index (same size and mtime) keep their row."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nucscale.archive._headers import header_row, header_rows
from nucscale.archive._schema import HEADER_COLUMNS
from nucscale.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

#: Files per Dask task: large enough that scheduling costs little next to reading headers.
BATCH = 64


@dataclass(frozen=True)
class WalkCounts:
    """What one indexing pass did."""

    files: int
    read: int
    reused: int


def list_files(roots: Iterable[Path]) -> list[Path]:
    """Every file under the roots (a root may be a file), at any depth, sorted, each once.

    Symbolic links to files are followed; links to folders are not (no cycles)."""
    found: dict[str, Path] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise InputError(root, "no such file or folder")
        if root.is_file():
            found.setdefault(os.path.abspath(root), root)
            continue
        for folder, dirs, files in os.walk(root, onerror=_walk_error):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_file():
                    found.setdefault(os.path.abspath(path), path)
    return [found[k] for k in sorted(found)]


def _walk_error(exc: OSError) -> None:
    log.warning("%s: folder skipped: %s", exc.filename, exc.strerror)


def index_rows(
    files: list[Path],
    previous: dict[str, dict[str, Any]] | None = None,
    client: Client | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> tuple[list[dict[str, Any]], WalkCounts]:
    """One header row per file, in the order of ``files``.

    A file whose path, size and mtime equal its row in ``previous`` keeps that row; the others
    are read, by Dask tasks of ``batch`` files when ``client`` is given and there is more than
    one batch."""
    previous = previous or {}
    rows: list[dict[str, Any] | None] = []
    todo: list[tuple[int, str]] = []
    for i, path in enumerate(files):
        key = str(path)
        old = previous.get(key)
        if old is not None and _unchanged(path, old):
            rows.append({k: old.get(k) for k in HEADER_COLUMNS})
        else:
            rows.append(None)
            todo.append((i, key))
    if client is None or len(todo) <= batch:
        for done, (i, key) in enumerate(todo, 1):
            rows[i] = header_row(key)
            if progress:
                progress(done)
    else:
        _read_on_cluster(
            client, [todo[i : i + batch] for i in range(0, len(todo), batch)], rows, progress
        )
    counts = WalkCounts(files=len(files), read=len(todo), reused=len(files) - len(todo))
    return [r for r in rows if r is not None], counts


def _unchanged(path: Path, old: dict[str, Any]) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns


def _read_on_cluster(
    client: Client,
    batches: list[list[tuple[int, str]]],
    rows: list[dict[str, Any] | None],
    progress: Callable[[int], None] | None,
) -> None:
    from distributed import as_completed

    futures = {}
    for n, batch in enumerate(batches):
        future = client.submit(
            header_rows, [key for _, key in batch], key=f"index-headers-{n}", pure=False
        )
        futures[future] = batch
    done = 0
    for future in as_completed(futures):
        batch = futures[future]
        for (i, _), row in zip(batch, future.result(), strict=True):
            rows[i] = row
        done += len(batch)
        if progress:
            progress(done)
