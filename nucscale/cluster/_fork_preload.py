"""What the local workers' fork server imports (:mod:`nucscale.cluster._forks`): the modules
named in :data:`IMPORTS_ENV`, comma-separated, each one that fails skipped.

multiprocessing's own preload lets an ``ImportError`` pass but ends the server on any other
error, with a traceback on the command's console (the first worker's start then starts a plain
server). Importing the list from here, through :func:`nucscale.cluster._warm.import_all`, keeps
the server up and the console clean; the task that needs a module that failed raises the real
error in its place.

The server imports this module as ``nucscale.cluster._fork_preload``: the package's
``__init__`` has then finished, so modules that import from ``nucscale.cluster`` (the
pipeline) load here too. The workers forked from the server inherit the variable with the
module already loaded, so nothing runs again.
"""

from __future__ import annotations

import os

from nucscale.cluster._forks import IMPORTS_ENV
from nucscale.cluster._warm import import_all

import_all(name for name in os.environ.get(IMPORTS_ENV, "").split(",") if name)
