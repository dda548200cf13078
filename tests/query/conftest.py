"""A small synthetic results folder built without a cluster, with bait outside it.

``tmp_path/out`` holds slides ``a`` (3 nuclei, a label image) and ``b`` (2 nuclei), a manifest
and the cohort table. Beside it, outside ``out``, lie a valid nucleus table
(``victim/part-0.parquet``, 5 nuclei) and a valid label image (``victim.zarr``): an unchecked id
such as ``a/../../../victim`` reaches them, so a test that they stay untouched means something.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely

from nucscale.features import GEOMETRY, NUCLEUS_SCHEMA
from nucscale.store import (
    ManifestRow,
    create_label_image,
    finish_label_image,
    labels_path,
    level0,
    nuclei_path,
    write_manifest,
    write_nuclei,
    write_slides_table,
)


def nucleus_table(n: int, x0: int = 0) -> pa.Table:
    """``n`` unit squares at x = x0 + i, ids 1..n, area 10 * (i + 1)."""
    cols: dict[str, pa.Array] = {}
    for f in NUCLEUS_SCHEMA:
        if f.name == "type_name":
            cols[f.name] = pa.array(["nucleus"] * n)
        elif f.name == GEOMETRY:
            cols[f.name] = pa.array([shapely.box(x0 + i, 0, x0 + i + 1, 1).wkb for i in range(n)])
        elif f.name == "area":
            cols[f.name] = pa.array(10.0 * (np.arange(n) + 1), f.type)
        elif f.name in ("bbox_x0", "centroid_x"):
            cols[f.name] = pa.array(x0 + np.arange(n), f.type)
        elif f.name == "bbox_x1":
            cols[f.name] = pa.array(x0 + np.arange(n) + 1, f.type)
        elif f.name == "bbox_y1":
            cols[f.name] = pa.array(np.ones(n), f.type)
        else:
            cols[f.name] = pa.array(np.arange(n) + 1, f.type)
    return pa.table(cols, schema=NUCLEUS_SCHEMA)


def write_slide(out: Path, slide_id: str, n: int) -> None:
    """A finished slide: nucleus table with a summary, plus its manifest row."""
    summary = {"nuclei": n, "nuclei_by_type": {"nucleus": n}, "qc": {}, "qc_flags": []}
    write_nuclei(nuclei_path(out, slide_id), [nucleus_table(n)], {"summary": json.dumps(summary)})
    write_manifest(out, [ManifestRow(slide_id, f"/x/{slide_id}.svs", "done", nuclei=n)])


def _label_image(path: Path, value: int) -> None:
    create_label_image(path, (64, 64), 32, {})
    labels = np.zeros((64, 64), np.int64)
    labels[8:16, 8:16] = value
    level0(path)[:] = labels
    finish_label_image(path, 0.5, None)


@pytest.fixture
def results_out(tmp_path: Path) -> Path:
    """``tmp_path/out`` as described in the module docstring; returns ``out``."""
    out = tmp_path / "out"
    write_slide(out, "a", 3)
    write_slide(out, "b", 2)
    write_slides_table(
        out, [ManifestRow(s, f"/x/{s}.svs", "done", nuclei=n) for s, n in (("a", 3), ("b", 2))]
    )
    _label_image(labels_path(out, "a"), 1)
    victim = tmp_path / "victim" / "part-0.parquet"
    write_nuclei(victim, [nucleus_table(5, x0=100)], {"summary": "{}"})
    _label_image(tmp_path / "victim.zarr", 99)
    return out


Snapshot = Callable[[Path], dict[str, tuple[str, int, str]]]


def _snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every file and folder under ``root``: relative path -> (kind, size, sha256)."""
    found: dict[str, tuple[str, int, str]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            found[rel] = ("dir", 0, "")
        else:
            data = p.read_bytes()
            found[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return found


@pytest.fixture
def snapshot() -> Snapshot:
    """``snapshot(root)``: every file and folder under ``root`` -> (kind, size, sha256)."""
    return _snapshot
