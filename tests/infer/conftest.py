"""Fixtures for the inference tests: a small real torch network with known weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from nucscale.contracts import DenseModel, PatchSpec
from nucscale.infer import Segmentation


class TinyNet(DenseModel):
    """Three valid 3x3 box filters on darkness (margin 3): 38 px in, 32 px out."""

    name = "tiny"
    mpp = 0.5
    spec = PatchSpec(38, 32)
    postprocess_context = 0
    max_nucleus_diameter = 12

    def __init__(self) -> None:
        convs = [torch.nn.Conv2d(1, 1, 3, bias=False) for _ in range(3)]
        with torch.no_grad():
            for conv in convs:
                conv.weight.fill_(1 / 9)
        self.module = torch.nn.Sequential(*convs)

    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        grey = torch.from_numpy(patches).float().mean(dim=-1, keepdim=True) / 255.0
        return 1.0 - grey.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((self.module(x) - 0.4) * 20.0)

    def postprocess(
        self, maps: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Segmentation:
        labels, n = ndi.label(maps[0] > 0.5)
        return Segmentation(labels.astype(np.int32), np.ones(n, np.int16), np.ones(n, np.float32))


@pytest.fixture(scope="module")
def model() -> TinyNet:
    return TinyNet()


@pytest.fixture(scope="session")
def tiny_model() -> DenseModel:
    return TinyNet()
