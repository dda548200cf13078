"""What the scratch stores (tile store, maps store) share: reuse of a store only when it was
made for the same run geometry, and completion markers ``<store>/done/<row>_<col>``, created by
an atomic rename after a task's last write, so a rerun skips exactly the tiles that finished
(whatever the zarr version does when a process dies mid-chunk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import zarr

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


def reusable(path: Path, attrs: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether the Zarr array at ``path`` has these ``attrs`` and ``shape`` (keep it); any other
    array there, or an unreadable one, is removed (and False returned)."""
    if not (path / "zarr.json").exists():
        return False
    try:
        existing = zarr.open_array(str(path), mode="r")
        if dict(existing.attrs) == attrs and existing.shape == shape:
            return True
    except (ValueError, KeyError, OSError):
        pass
    shutil.rmtree(path)
    return False
