"""Completion markers of the scratch stores: ``<store>/done/<row>_<col>``, created by an atomic
rename after a task's last write, so a rerun skips exactly the tiles that finished (whatever
the zarr version does when a process dies mid-chunk)."""

from __future__ import annotations

import os
from pathlib import Path

_DONE = "done"


def is_done(store: Path, row: int, col: int) -> bool:
    """Whether tile (row, col) of ``store`` is marked complete."""
    return (store / _DONE / f"{row}_{col}").exists()


def mark_done(store: Path, row: int, col: int) -> None:
    """Mark tile (row, col) of ``store`` complete (atomically)."""
    marker = store / _DONE / f"{row}_{col}"
    marker.parent.mkdir(exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_bytes(b"")
    os.replace(tmp, marker)
