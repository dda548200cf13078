"""The engine on CUDA (bf16 autocast, channels-last): same maps as on the CPU, within bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.contracts import DenseModel
from nucscale.infer._engine import predict_image, predict_region

pytestmark = pytest.mark.gpu


def test_cuda_maps_match_cpu(tiny_model: DenseModel) -> None:
    model = tiny_model
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(200, 260, 3), dtype=np.uint8)
    cpu = predict_image(model, img, device=torch.device("cpu"))
    gpu = predict_image(model, img, device=torch.device("cuda"))
    assert gpu.shape == cpu.shape and np.isfinite(gpu).all()
    # bf16 keeps 8 bits of mantissa: relative error of the whole map between 1e-3 and 1e-2;
    # single values drift further through the layers (on an H200, 2 of 52,000 by 0.0205)
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 1e-2
    assert np.abs(gpu - cpu).max() < 5e-2


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


def test_shipped_unet_on_cuda_matches_cpu(dsb2018: Path) -> None:
    """The default U-Net under bf16 autocast finds the same nuclei as in float32 on the CPU."""
    from PIL import Image

    from nucscale.analysis import panoptic_quality
    from nucscale.models.unet import UNetModel

    img = np.asarray(Image.open(dsb2018 / "519dc0d672d1_image.png").convert("RGB"))
    cpu_model, gpu_model = UNetModel(), UNetModel()  # separate instances: one per device
    cpu = cpu_model.postprocess(
        predict_image(cpu_model, img, background=0, device=torch.device("cpu"))
    )
    gpu = gpu_model.postprocess(
        predict_image(gpu_model, img, background=0, device=torch.device("cuda"))
    )
    assert abs(gpu.count - cpu.count) <= max(2, cpu.count // 20)
    assert panoptic_quality(cpu.labels, gpu.labels)["pq"] > 0.9
