"""Benchmark: network throughput through the sliding-window engine on CPU (or CUDA); JSON lines.

A real CMU-1 region goes through ``predict_image`` for each network. HoVer-Net has seeded random
weights (the released ones cannot be downloaded here; speed does not depend on the values).

    python benchmarks/models.py [--size 512] [--unet PATH_TO_bioimageio_weights.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nucscale.infer._engine import pick_device, predict_image
from nucscale.io import open_slide
from nucscale.models._base import DenseModel

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def measure(name: str, model: DenseModel, size: int, batch: int) -> None:
    with open_slide(SHARED / "slides" / "CMU-1-Small-Region.svs") as s:
        rgb = s.read_region(0, 800, 1200, size, size)
    device = pick_device()
    predict_image(model, rgb[:64, :64], batch_size=batch, device=device)  # warm-up
    t0 = time.perf_counter()
    predict_image(model, rgb, batch_size=batch, device=device)
    dt = time.perf_counter() - t0
    mp = size * size / 1e6
    mm2 = mp * model.mpp * model.mpp  # area of the region at the model's pixel size
    print(
        json.dumps(
            {
                "benchmark": "models",
                "model": name,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "region_px": size,
                "model_mpp": model.mpp,
                "seconds": round(dt, 2),
                "megapixels_per_s": round(mp / dt, 3),
                "s_per_mm2": round(dt / mm2, 1),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--unet", default=str(SHARED / "models" / "unet2d-nuclei-broad" / "weights.pt"))
    args = ap.parse_args()
    from nucscale.models.hovernet import HoVerNet
    from nucscale.models.torchscript import TorchScriptModel

    measure("unet2d-nuclei-broad", TorchScriptModel(args.unet), args.size, args.batch)
    torch.manual_seed(0)
    measure("hovernet-fast-pannuke", HoVerNet("fast", 6, "pannuke"), args.size, args.batch)


if __name__ == "__main__":
    main()
