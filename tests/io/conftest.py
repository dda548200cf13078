"""Fixtures for the reader tests: a real CMU-1 region and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import pytest


@pytest.fixture(scope="session")
def cmu1_region(cmu1_svs: Path) -> np.ndarray:
    """A 640x480 tissue region of the real CMU-1 slide (RGB uint8), read with OpenSlide itself."""
    with openslide.OpenSlide(cmu1_svs) as osr:
        rgba = np.asarray(osr.read_region((400, 600), 0, (640, 480)))
    return np.ascontiguousarray(rgba[:, :, :3])


@pytest.fixture(scope="session")
def cmu1_level0(cmu1_svs: Path) -> np.ndarray:
    """The whole level 0 of the real CMU-1 SVS (2967x2220x3)."""
    with openslide.OpenSlide(cmu1_svs) as osr:
        rgba = np.asarray(osr.read_region((0, 0), 0, osr.dimensions))
    return np.ascontiguousarray(rgba[:, :, :3])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session")
def psnr() -> Callable[[np.ndarray, np.ndarray], float]:
    """Peak signal-to-noise ratio in dB of two uint8 images."""
    return _psnr
