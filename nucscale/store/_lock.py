"""One run at a time per output folder: an advisory lock on ``OUT/.nucscale.lock``.

Two runs on one ``OUT`` would both read-merge-write the manifest and delete each other's
scratch. :func:`out_lock` takes an exclusive ``flock`` on the lock file without waiting and
writes the holder's host, PID and start time into it; a second run fails at once with an
:class:`~nucscale.errors.OutputError` naming them. The kernel drops the lock when its process
ends, however it ends, so a stale lock file left by a dead run is simply taken over. (``flock``
is advisory and per host on some network filesystems; cluster runs start the run from one
client, which is where the lock is held.)
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nucscale.errors import OutputError

LOCK_NAME = ".nucscale.lock"
_HELD: set[str] = set()  # folders this process holds: the CLI locks before its cluster starts


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold the run lock of ``out`` for the ``with`` block (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:  # re-entered by the same process (flock would refuse a second fd)
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            raise OutputError(
                out,
                f"another nucscale run is using this folder ({holder}); wait for it to "
                "finish or choose another --out",
            ) from None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}, since {stamp}".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # closing releases the lock
