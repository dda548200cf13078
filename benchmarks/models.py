"""Benchmark: network throughput through the sliding-window engine on CPU (or CUDA); JSON lines.

A real CMU-1 region goes through ``predict_image`` for each network. HoVer-Net has seeded random
weights (the released ones cannot be downloaded here; speed does not depend on the values).

    python benchmarks/models.py [--size 2048] [--threads 1] [--models unet,hovernet-fast]

``megapixels_per_s`` counts the network and the post-processing to instances; the slower models
run on at most a 512 px region.
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
    """Time maps (``predict_image``) and instances (``postprocess``) of a ``size`` px region."""
    with open_slide(SHARED / "slides" / "CMU-1-Small-Region.svs") as s:
        rgb = s.read_region(0, 0, 0, size, size)
    device = pick_device()
    predict_image(model, rgb[:64, :64], batch_size=batch, device=device)  # warm-up
    t0 = time.perf_counter()
    maps = predict_image(model, rgb, batch_size=batch, device=device)
    t1 = time.perf_counter()
    nuclei = model.postprocess(maps).count
    t2 = time.perf_counter()
    mp = size * size / 1e6
    mm2 = mp * model.mpp * model.mpp  # area of the region at the model's pixel size
    threads = torch.get_num_threads()
    print(
        json.dumps(
            {
                "benchmark": "models",
                "model": name,
                "device": str(device),
                "threads": threads,
                "region_px": size,
                "model_mpp": model.mpp,
                "nuclei": nuclei,
                "network_s": round(t1 - t0, 2),
                "postprocess_s": round(t2 - t1, 2),
                "megapixels_per_s": round(mp / (t2 - t0), 3),
                "megapixels_per_s_per_thread": round(mp / (t2 - t0) / threads, 3),
                "network_megapixels_per_s": round(mp / (t1 - t0), 3),
                "s_per_mm2": round((t2 - t0) / mm2, 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048, help="region side, px (CMU-1 from 0,0)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--models", default="unet,unet2d-nuclei-broad,hovernet-fast", help="comma-separated"
    )
    ap.add_argument("--unet", default=str(SHARED / "models" / "unet2d-nuclei-broad" / "weights.pt"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from nucscale.models.hovernet import HoVerNet
    from nucscale.models.torchscript import TorchScriptModel
    from nucscale.models.unet import UNetModel

    for name in args.models.split(","):
        if name == "unet":
            measure("unet (shipped default)", UNetModel(), args.size, args.batch)
        elif name == "unet2d-nuclei-broad":
            measure(name, TorchScriptModel(args.unet), min(args.size, 512), args.batch)
        elif name == "hovernet-fast":
            torch.manual_seed(0)  # random weights: speed does not depend on the values
            model = HoVerNet("fast", 6, "pannuke")
            measure("hovernet-fast-pannuke", model, min(args.size, 512), args.batch)
        else:
            raise SystemExit(f"unknown model {name!r}")


if __name__ == "__main__":
    main()
