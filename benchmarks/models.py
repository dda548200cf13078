"""Benchmark: network throughput through the sliding-window engine on CPU (or CUDA); JSON lines.

A real CMU-1 region goes through ``predict_image`` for each network. HoVer-Net has seeded random
weights (the released ones cannot be downloaded here; speed does not depend on the values).

    python benchmarks/models.py [--size 2048] [--threads 1] [--models unet,bioimageio,hovernet-fast]
        [--bioimageio PACKAGE] [--weights-format torchscript,onnx]
    python benchmarks/models.py --runtime torch,onnx [--threads-list 1,2] [--repeats 3]
    python benchmarks/models.py --models unet,hovernet-fast --forward-batches 8,32,128  # GPU
    python benchmarks/models.py --models unet --threads 1 --precision float32,bfloat16
    python benchmarks/models.py --models unet --threads 1 --precision float32,bfloat16 \
        --cpu-runtime torch,openvino --repeats 5
    python benchmarks/models.py --models hovernet-fast --threads 1 --cpu-runtime torch,openvino \
        --repeats 1

``megapixels_per_s`` counts the network and the post-processing to instances; the slower models
run on at most a 512 px region. ``--precision`` times the U-Net's CPU arithmetic
(:mod:`nucscale.infer._precision`), interleaved: float32, bfloat16, float32, ... each timing in
turn, the median of each kept. Measured (2-core AMD EPYC with AVX512-BF16, torch 2.13 CPU, one
thread, 2048 px region, 16 patches, ``--repeats 5``, three invocations): float32 81.2 / 73.5 /
77.5 ms, bfloat16 33.4 / 32.9 / 32.9 ms per 512 px output patch (0.41-0.45 of float32, the
engine's preprocessing and rounding included); 1,164 against 1,166 nuclei.

``--runtime`` compares runtimes for the U-Net architecture alone: ``UNet(depth=5, width=8,
in_channels=3, out_channels=3)`` with BatchNorm folded (seeded weights: speed does not depend on
their values), batches of 320 px patches cut on the engine's 256 px grid from a real CMU-1
region and scaled as brightfield input (``rgb / 255``); torch runs channels-last under
``inference_mode`` as the engine does, ONNX Runtime (CPU provider) runs the same network exported
by ``torch.onnx.export`` into memory. Each (runtime, threads) pair is timed ``--repeats`` times
over all the region's batches and the best time is kept (the machine may be shared: the spread
is printed too). One JSON line per pair, with the largest difference from torch's output.
Exporting needs the ``onnx`` package (not a nucscale dependency: ``pip install onnx``).

Measured (2-core machine, a training run using ~1.4 cores throughout; 48 patches, best of 3,
three invocations): 1 thread torch 1.93 / 2.74 / 2.90 s, ONNX Runtime 2.82 / 2.85 / 2.79 s;
2 threads torch 4.76 / 4.92 / 4.82 s, ONNX Runtime 3.81 / 3.55 / 3.86 s; outputs equal to
1.5e-8. At the pipeline's default of one thread per worker ONNX Runtime is no faster, so the
U-Net keeps torch; it wins only on two threads of an oversubscribed machine, where both are
slower than one thread.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nucscale.contracts import DenseModel
from nucscale.infer._engine import batch_for, pick_device, predict_image
from nucscale.io import open_slide

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def measure(
    name: str,
    model: DenseModel,
    size: int,
    batch: int | None,
    repeats: int = 1,
    precisions: tuple[str, ...] = ("float32",),
    runtimes: tuple[str, ...] = ("torch",),
) -> None:
    """Time maps (``predict_image``) and instances (``postprocess``) of a ``size`` px region
    in each CPU ``precisions`` and ``runtimes`` (torch, openvino), their timings interleaved;
    with ``repeats`` > 1 the median of that many timings of each (this VM's speed varies by up
    to 40 % from one run to the next)."""
    with open_slide(SHARED / "slides" / "CMU-1-Small-Region.svs") as s:
        rgb = s.read_region(0, 0, 0, size, size)
    device = pick_device()
    variants = [(p, rt) for rt in runtimes for p in precisions]
    net_s: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    post_s: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    nuclei: dict[tuple[str, str], int] = {}
    for p, rt in variants:  # warm-up (the bfloat16 copy of the weights, OpenVINO's compiling)
        predict_image(
            model, rgb[:64, :64], batch_size=batch, device=device, precision=p, runtime=rt
        )
    for _ in range(repeats):
        for v in variants:
            t0 = time.perf_counter()
            maps = predict_image(
                model, rgb, batch_size=batch, device=device, precision=v[0], runtime=v[1]
            )
            t1 = time.perf_counter()
            nuclei[v] = model.postprocess(maps).count
            net_s[v].append(t1 - t0)
            post_s[v].append(time.perf_counter() - t1)
    out = model.spec.output_size
    patches = (-(-size // out)) ** 2
    for v in variants:
        p = v[0]
        t0, t1 = 0.0, float(np.median(net_s[v]))
        t2 = t1 + float(np.median(post_s[v]))
        mp = size * size / 1e6
        mm2 = mp * model.mpp * model.mpp  # area of the region at the model's pixel size
        threads = torch.get_num_threads()
        record = {
            "benchmark": "models",
            "model": name,
            "device": str(device),
            "precision": p if device.type == "cpu" else "bfloat16-autocast",
            "cpu_runtime": v[1] if device.type == "cpu" else "torch",
            "threads": threads,
            "region_px": size,
            "repeats": repeats,
            "batch": batch_for(model, device, batch, v[1]),
            "model_mpp": model.mpp,
            "nuclei": nuclei[v],
            "network_s": round(t1 - t0, 2),
            "network_ms_per_patch": round(1000 * t1 / patches, 1),
            "postprocess_s": round(t2 - t1, 2),
            "megapixels_per_s": round(mp / (t2 - t0), 3),
            "megapixels_per_s_per_thread": round(mp / (t2 - t0) / threads, 3),
            "network_megapixels_per_s": round(mp / (t1 - t0), 3),
            "s_per_mm2": round((t2 - t0) / mm2, 1),
        }
        print(json.dumps(record), flush=True)


def measure_forward(name: str, model: DenseModel, batches: list[int], repeats: int = 20) -> None:
    """The network alone on a GPU (``model.forward`` on a random device batch, bf16 autocast,
    channels-last, timed by CUDA events, median of ``repeats``) beside the engine's per-batch
    step (``_run``: host-to-device copy, forward, rounding, copy back), per batch size: the
    share of the engine's time that is not the network's arithmetic."""
    from nucscale.infer._engine import _ready, _run

    device = torch.device("cuda")
    _ready(model, device)
    size, out = model.spec.input_size, model.spec.output_size
    for batch in batches:
        host = torch.rand(batch, 3, size, size)
        x = host.to(device).contiguous(memory_format=torch.channels_last)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        pure, step = [], []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(3):
                model.forward(x)
            for _ in range(repeats):
                start.record()
                model.forward(x)
                end.record()
                end.synchronize()
                pure.append(start.elapsed_time(end) / 1e3)
        _run(model, host, batch, device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            _run(model, host, batch, device)
            step.append(time.perf_counter() - t0)
        p, e = float(np.median(pure)), float(np.median(step))
        mp = batch * out * out / 1e6
        print(
            json.dumps(
                {
                    "benchmark": "models-forward",
                    "model": name,
                    "device": torch.cuda.get_device_name(0),
                    "batch": batch,
                    "cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "patch": [size, out],
                    "forward_s": round(p, 5),
                    "engine_step_s": round(e, 5),
                    "forward_output_megapixels_per_s": round(mp / p, 1),
                    "engine_output_megapixels_per_s": round(mp / e, 1),
                    "engine_share_not_forward": round(1 - p / e, 3),
                }
            ),
            flush=True,
        )


def cmu1_patches(size: int, patch: int = 320, step: int = 256) -> np.ndarray:
    """(N, 3, patch, patch) float32 brightfield input (``rgb / 255``) cut on a ``step`` px grid
    from the real CMU-1 region ``size`` px square at (0, 0)."""
    with open_slide(SHARED / "slides" / "CMU-1-Small-Region.svs") as s:
        rgb = s.read_region(0, 0, 0, size, size)
    starts = range(0, size - patch + 1, step)
    cut = [rgb[y : y + patch, x : x + patch] for y in starts for x in starts]
    return np.stack(cut).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)


def onnx_runner(
    net: torch.nn.Module, batch: int, threads: int
) -> Callable[[np.ndarray], np.ndarray]:
    """``net`` exported to ONNX in memory and run by ONNX Runtime on ``threads`` CPU threads."""
    import onnxruntime as ort

    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise SystemExit("--runtime onnx needs the onnx package: pip install onnx") from None
    buf = io.BytesIO()
    torch.onnx.export(
        net, (torch.zeros(batch, 3, 320, 320),), buf, input_names=["x"], output_names=["y"],
        dynamo=False,
    )  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(sess.run(None, {"x": x})[0])


def torch_runner(net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``net`` run channels-last under ``inference_mode``, as the engine runs it on the CPU."""
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return net(t).numpy()

    return run


def measure_runtimes(
    runtimes: list[str], threads_list: list[int], size: int, batch: int, repeats: int
) -> None:
    """Best-of-``repeats`` seconds of the default U-Net architecture per runtime and thread
    count over every batch of a real ``size`` px CMU-1 region (see the module docstring)."""
    import warnings

    from nucscale.models.unet import UNet, fold_batchnorm

    torch.manual_seed(0)
    net = fold_batchnorm(UNet(depth=5, width=8, in_channels=3, out_channels=3)).eval()
    x = cmu1_patches(size)
    n = len(x) - len(x) % batch
    batches = [x[i : i + batch] for i in range(0, n, batch)]
    reference = torch_runner(net)(batches[0])
    for threads in threads_list:
        torch.set_num_threads(threads)
        for runtime in runtimes:
            if runtime == "torch":
                run = torch_runner(net)
            elif runtime == "onnx":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the exporter's deprecation notices
                    run = onnx_runner(net, batch, threads)
            else:
                raise SystemExit(f"unknown runtime {runtime!r}; known: torch, onnx")
            first = run(batches[0])  # warm-up (and the output compared with torch's)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for b in batches:
                    run(b)
                times.append(time.perf_counter() - t0)
            best = min(times)
            record = {
                "benchmark": "models-runtime",
                "model": "UNet(depth=5, width=8, in=3, out=3), BatchNorm folded",
                "runtime": runtime,
                "threads": threads,
                "patches": n,
                "batch": batch,
                "patch_px": 320,
                "best_s": round(best, 3),
                "runs_s": [round(t, 3) for t in times],
                "ms_per_patch": round(1000 * best / n, 1),
                "output_megapixels_per_s": round(n * 256 * 256 / 1e6 / best, 3),
                "max_abs_diff_vs_torch": float(np.abs(first - reference).max()),
            }
            print(json.dumps(record), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048, help="region side, px (CMU-1 from 0,0)")
    ap.add_argument(
        "--batch", type=int, default=None, help="patches per pass (default: the engine's choice)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--models", default="unet,bioimageio,hovernet-fast", help="comma-separated")
    ap.add_argument(
        "--bioimageio",
        default=str(SHARED / "models" / "unet2d-nuclei-broad"),
        help="bioimage.io package of the bioimageio model (0.5 µm/px when it has no scale)",
    )
    ap.add_argument(
        "--weights-format", default="torchscript,onnx", help="formats of the bioimageio package"
    )
    ap.add_argument(
        "--runtime", default=None, help="compare runtimes for the U-Net instead: torch,onnx"
    )
    ap.add_argument("--threads-list", default="1,2", help="thread counts for --runtime")
    ap.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms per shape"
    )
    ap.add_argument(
        "--forward-batches",
        default=None,
        help="on a GPU: time the network alone and the engine's step at these batch sizes",
    )
    ap.add_argument(
        "--precision", default="float32", help="the U-Net's CPU arithmetic: float32,bfloat16"
    )
    ap.add_argument(
        "--cpu-runtime",
        default="torch",
        help="what runs the U-Net or HoVer-Net on the CPU: torch,openvino",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timings per --runtime pair (best), or of the U-Net's maps and instances (median)",
    )
    args = ap.parse_args()
    if args.runtime:
        threads = [int(t) for t in args.threads_list.split(",")]
        measure_runtimes(
            args.runtime.split(","), threads, min(args.size, 1856), args.batch or 8, args.repeats
        )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from nucscale.models.bioimageio import BioImageIOModel
    from nucscale.models.hovernet import HoVerNet
    from nucscale.models.unet import UNetModel

    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.forward_batches:
        batches = [int(b) for b in args.forward_batches.split(",")]
        for name in args.models.split(","):
            if name == "unet":
                measure_forward(name, UNetModel(), batches)
            elif name == "hovernet-fast":
                torch.manual_seed(0)
                measure_forward(name, HoVerNet("fast", 6, "pannuke"), batches)
        return
    for name in args.models.split(","):
        if name == "unet":
            measure("unet (shipped default)", UNetModel(), args.size, args.batch, args.repeats,
                    tuple(args.precision.split(",")),
                    tuple(args.cpu_runtime.split(",")))  # fmt: skip
        elif name == "bioimageio":
            for fmt in args.weights_format.split(","):
                model = BioImageIOModel(
                    args.bioimageio, mpp=0.5, modality="brightfield", weights_format=fmt
                )
                size = min(args.size, 1024)  # ~0.2 s per 512 px patch on one core
                measure(f"{model.name} ({fmt})", model, size, model.batch_size)
        elif name == "hovernet-fast":
            torch.manual_seed(0)  # random weights: speed does not depend on the values
            model = HoVerNet("fast", 6, "pannuke")
            size = args.size if torch.cuda.is_available() else min(args.size, 512)
            # float32 only: HoVer-Net's CPU arithmetic (nucscale.infer._registry._hovernet)
            measure("hovernet-fast-pannuke", model, size, args.batch, args.repeats,
                    ("float32",), tuple(args.cpu_runtime.split(",")))  # fmt: skip
        else:
            raise SystemExit(f"unknown model {name!r}")


if __name__ == "__main__":
    main()
