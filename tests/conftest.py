"""Session fixtures: the real third-party files in ../shared/data and CUDA detection.

Tests that need ../shared/data skip with a reason when it is absent, and fail instead when
NUCSCALE_REQUIRE_SHARED=1 (set by .ci/run), so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NUCSCALE_SHARED_DATA", REPO.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"shared test data not found: {path} (see ../shared/data/README.md)"
    if os.environ.get("NUCSCALE_REQUIRE_SHARED") == "1":
        pytest.fail(msg + "; NUCSCALE_REQUIRE_SHARED=1 forbids skipping")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def cmu1_svs(shared_data: Path) -> Path:
    """The real Aperio CMU-1-Small-Region.svs (2220x2967, 0.499 µm/px)."""
    return _require(shared_data / "slides" / "CMU-1-Small-Region.svs")


@pytest.fixture(scope="session")
def cmu1_dicom(shared_data: Path) -> Path:
    """The same pixels as a 12-level DICOM WSI pyramid (folder)."""
    return _require(shared_data / "slides" / "cmu-1-small-region-dicom")


@pytest.fixture(scope="session")
def openslide_fixtures(shared_data: Path) -> Path:
    return _require(shared_data / "slides" / "openslide-fixtures")


@pytest.fixture(scope="session")
def highdicom_dir(shared_data: Path) -> Path:
    return _require(shared_data / "dicom" / "highdicom")


@pytest.fixture(scope="session")
def bioimageio_unet(shared_data: Path) -> Path:
    """The bioimage.io package "UNet 2D Nuclei Broad" (MIT): YAML, TorchScript and ONNX weights,
    test tensors; its README, covers and sample PNGs are absent."""
    return _require(shared_data / "models" / "unet2d-nuclei-broad")


@pytest.fixture(scope="session")
def dsb2018(shared_data: Path) -> Path:
    """49 DSB 2018 images with instance-label ground truth (CC0)."""
    return _require(shared_data / "nuclei" / "dsb2018-dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
