"""What the local workers' fork server imports (:mod:`nucscale.cluster._forks`): the modules
named in :data:`IMPORTS_ENV`, comma-separated, each one that fails skipped.

multiprocessing's own preload lets an ``ImportError`` pass but ends the server on any other
error, with a traceback on the command's console (the first worker's start then starts a plain
server). Importing the list from here, through :func:`nucscale.cluster._warm.import_all`, keeps
the server up and the console clean; the task that needs a module that failed raises the real
error in its place.
"""

from __future__ import annotations

import os

from nucscale.cluster._warm import import_all

#: The environment variable that names the modules (in the server's environment; the workers
#: forked from it inherit it with the module already loaded, so nothing runs again).
IMPORTS_ENV = "NUCSCALE_FORK_IMPORTS"

import_all(name for name in os.environ.get(IMPORTS_ENV, "").split(",") if name)
