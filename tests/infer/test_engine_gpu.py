"""The engine on CUDA (bf16 autocast, channels-last): same maps as on the CPU, within bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nucscale.infer._engine import predict_image, predict_region
from nucscale.models._base import DenseModel

pytestmark = pytest.mark.gpu


def test_cuda_maps_match_cpu(tiny_model: DenseModel) -> None:
    model = tiny_model
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(200, 260, 3), dtype=np.uint8)
    cpu = predict_image(model, img, device=torch.device("cpu"))
    gpu = predict_image(model, img, device=torch.device("cuda"))
    assert gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)  # bf16 has 8 bits of mantissa


def test_cuda_maps_do_not_depend_on_the_window(tiny_model: DenseModel) -> None:
    model = tiny_model
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(220, 220, 3), dtype=np.uint8)
    a, va = predict_region(model, img[:180, :180], (0, 0), device=torch.device("cuda"))
    b, vb = predict_region(model, img[32:, 32:], (32, 32), device=torch.device("cuda"))
    # global [64, 160) is valid in both
    pa = a[:, 64 - va[1] : 160 - va[1], 64 - va[0] : 160 - va[0]]
    pb = b[:, 32 - vb[1] : 128 - vb[1], 32 - vb[0] : 128 - vb[0]]
    assert np.array_equal(pa, pb)
