"""The checks ``nucscale run`` makes before it imports the pipeline (Dask, torch, readers:
seconds): a mistyped output folder or input path fails in a fraction of a second.

Only the standard library is imported here. The inputs' deeper checks (does any open, with a
pixel size) follow in :mod:`nucscale.pipeline._preflight` once the pipeline is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nucscale.errors import OutputError

#: Characters that make an argument a glob pattern (as :mod:`nucscale.pipeline._inputs`).
_GLOB = re.compile(r"[*?\[]")


def check_out(out: Path) -> None:
    """Raise :class:`OutputError` unless ``out`` is a writable folder or can be created as one.

    Creates nothing: a run that stops before any slide leaves no folder behind.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise OutputError(out, "exists and is not a folder; --out needs a folder (new or "
                              "existing)")  # fmt: skip
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(out, "folder is not writable; check its permissions")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(out, f"cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(out, f"cannot be created: {parent} is not writable")


def missing_inputs(inputs: list[str]) -> list[str]:
    """One reason per input when *every* input is a plain path that does not exist; else
    empty (a cohort with one usable input runs, its missing files failing in the manifest)."""
    reasons = []
    for item in inputs:
        if _GLOB.search(item) or Path(item).exists():
            return []
        reasons.append(f"{Path(item).absolute()}: no such file or directory")
    return reasons
