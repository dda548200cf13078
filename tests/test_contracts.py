"""The contracts module imports no implementation, and models import nothing from infer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nucscale"


def test_contracts_load_no_implementation_and_no_torch() -> None:
    code = (
        "import sys, nucscale.contracts\n"
        "print([m for m in sys.modules if m.startswith(('nucscale.', 'torch')) "
        "and m != 'nucscale.contracts'])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_models_do_not_import_infer() -> None:
    """Stages depend one way: infer runs models through the contracts; a model (and its
    post-processing, beside it) never reaches back into infer."""
    offenders = {
        p.name: sorted(m for m in _imports(p) if m.startswith("nucscale.infer"))
        for p in (PACKAGE / "models").glob("*.py")
    }
    assert not any(offenders.values()), offenders


def test_the_worker_modules_leave_dask_array_and_pydicom_unloaded() -> None:
    """Every local worker's start waits for :data:`WORKER_MODULES` to load; the tasks never use
    dask.array (0.15 s of that start), so only a slide's ``to_dask`` imports it, and pydicom
    (0.07 s) loads with the first DICOM slide."""
    code = (
        "import importlib, sys\n"
        "from nucscale.contracts import WORKER_MODULES\n"
        "for name in WORKER_MODULES:\n"
        "    importlib.import_module(name)\n"
        "print(*(m in sys.modules for m in ('dask.array', 'pydicom', 'torch')))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False", "True"], res.stdout
