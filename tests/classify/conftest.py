"""Classify fixtures: a seeded synthetic results folder (no cluster) whose nuclei fall into
classes by a rule on their features, and a copy of the real CMU-1 run to write into.

``synthetic_out``: slides ``a`` (120 nuclei) and ``b`` (80), each with a nucleus table of
seeded random measurements and a ``--features full`` table; the rule class of a nucleus is
``large`` when its area exceeds 40 µm², else ``small`` (:func:`rule`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from nucscale.features import GEOMETRY, NUCLEUS_SCHEMA
from nucscale.features._cellprofiler import FULL_SCHEMA
from nucscale.store import (
    ManifestRow,
    features_path,
    nuclei_path,
    write_manifest,
    write_nuclei,
    write_slides_table,
)

SLIDES = {"a": 120, "b": 80}
AREA_SPLIT = 40.0


def rule(area: np.ndarray) -> np.ndarray:
    """The class of nuclei of the synthetic folder: ``large`` above 40 µm² of area."""
    return np.where(np.asarray(area) > AREA_SPLIT, "large", "small")


def synthetic_nuclei(n: int, seed: int) -> pa.Table:
    """``n`` nuclei with seeded random measurements; ids ``1000 + i``."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {}
    for f in NUCLEUS_SCHEMA:
        if f.name == "nucleus_id":
            cols[f.name] = pa.array(1000 + np.arange(n), f.type)
        elif f.name == "type_name":
            cols[f.name] = pa.array(["nucleus"] * n)
        elif f.name == "type":
            cols[f.name] = pa.array(np.ones(n), f.type)
        elif f.name == GEOMETRY:
            cols[f.name] = pa.array([shapely.box(5 * i, 0, 5 * i + 4, 4).wkb for i in range(n)])
        elif f.name == "area":
            cols[f.name] = pa.array(rng.uniform(10, 70, n), f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(rng.integers(0, 5, n), f.type)
        else:
            cols[f.name] = pa.array(rng.normal(size=n), f.type)
    return pa.table(cols, schema=NUCLEUS_SCHEMA)


def synthetic_features(ids: np.ndarray, seed: int) -> pa.Table:
    """A ``--features full`` table for nuclei ``ids`` (seeded noise)."""
    rng = np.random.default_rng(seed)
    cols = {"nucleus_id": pa.array(ids, pa.int64())}
    for f in FULL_SCHEMA:
        if f.name != "nucleus_id":
            v = rng.integers(0, 9, len(ids)) if f.type == pa.int64() else rng.normal(size=len(ids))
            cols[f.name] = pa.array(v, f.type)
    return pa.table(cols, schema=FULL_SCHEMA)


def build_synthetic_out(out: Path, full: bool = True) -> Path:
    """The folder of the module docstring at ``out``."""
    rows = []
    for i, (sid, n) in enumerate(SLIDES.items()):
        table = synthetic_nuclei(n, seed=i)
        meta = {"settings_key": f"key-{sid}", "finished": "2026-01-01T00:00:00+00:00"}
        write_nuclei(nuclei_path(out, sid), [table], meta)
        if full:
            path = features_path(out, sid)
            path.parent.mkdir(parents=True, exist_ok=True)
            ids = table.column("nucleus_id").to_numpy()
            pq.write_table(synthetic_features(ids, seed=10 + i), path)
        rows.append(ManifestRow(sid, f"/x/{sid}.svs", "done", nuclei=n))
    write_manifest(out, rows)
    write_slides_table(out, rows)
    return out


def rule_labels(out: Path) -> pd.DataFrame:
    """Every nucleus of the synthetic folder with its rule class."""
    frames = []
    for sid in SLIDES:
        t = pq.read_table(nuclei_path(out, sid), columns=["nucleus_id", "area"]).to_pandas()
        frames.append(
            pd.DataFrame({"slide_id": sid, "nucleus_id": t.nucleus_id, "label": rule(t.area)})
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def synthetic_out(tmp_path: Path) -> Path:
    """The synthetic folder with features tables (module docstring)."""
    return build_synthetic_out(tmp_path / "out")


@pytest.fixture
def make_out(tmp_path: Path) -> Callable[..., Path]:
    """``make(name, full=True)``: another synthetic folder, ``tmp_path/name``."""

    def make(name: str, full: bool = True) -> Path:
        return build_synthetic_out(tmp_path / name, full)

    return make


@pytest.fixture
def synthetic_labels(synthetic_out: Path) -> pd.DataFrame:
    """Every nucleus of ``synthetic_out`` with its rule class (slide_id, nucleus_id, label)."""
    return rule_labels(synthetic_out)


@pytest.fixture
def cmu1_out(cmu1_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's CMU-1 run (without its scratch), for a test to write into."""
    out = tmp_path / "cmu1"
    shutil.copytree(cmu1_run, out, ignore=shutil.ignore_patterns(".work", ".nucscale.lock"))
    return out
