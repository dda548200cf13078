"""Peer benchmark: nucscale vs TIAToolbox, HoVer-Net nucleus instance segmentation; one JSON line.

Both tools run the same HoVer-Net (``fast`` mode, 6 types: the PanNuke layout) with the same
weights on the same image region, each in a fresh process tree:

- the region is level-0 pixels of the real slide (CMU-1-Small-Region.svs, 0.499 µm/px) written
  as a flat TIFF that says 0.25 µm/px, so both tools take it as 40x, HoVer-Net's native pixel
  size, and neither resamples it;
- the weights are seeded random ones (``torch.manual_seed(0)``; the released PanNuke checkpoint
  cannot be had here), saved in the official format (``{"desc": {"module." + key: tensor}}``).
  TIAToolbox's ``HoVerNet`` uses the official key names too, so the mapping only drops the
  ``module.`` prefix (``to_tiatoolbox_key``); both sides assert that every key loads, shapes
  included, and their SHA-256 over all tensors must match;
- nucscale: ``python -m nucscale run CROP --model hovernet --weights CKPT --workers 1
  --threads N --tissue none`` (analysis pixel size from the TIFF: 0.25 µm/px; N = the cores,
  as TIAToolbox's torch uses them all: one tile, one worker, every core);
- TIAToolbox: ``MultiTaskSegmentor`` (2.1's successor of the deprecated
  ``NucleusInstanceSegmentor``) in WSI mode, input and output at ``{"units": "mpp",
  "resolution": 0.25}`` (the reader is told 0.25 µm/px: it finds no pixel size in a flat TIFF),
  256 -> 164 px patches with stride 164, no tissue mask, Zarr output (its SQLite annotation
  store needs ``sqlite3`` with extension loading, which this Python lacks).

Reported per tool: wall seconds of the whole process tree (start-up, model load, inference,
post-processing, writing), its peak memory (sum over the tree of the proportional set size,
PSS, sampled every 0.1 s: shared pages are split, not counted twice; the summed RSS is given
too) and the nuclei found. ``wall_ratio`` = TIAToolbox / nucscale seconds and ``memory_ratio`` =
TIAToolbox / nucscale peak (above 1: nucscale better); ``target_met``: nucscale is faster.
The two post-processing implementations differ and the weights are random, so nuclei counts
are a sanity check, not a comparison of quality.

TIAToolbox needs its own virtual environment (``--tia-python``), outside this repository:

    python3 -m venv ../tia-venv
    ../tia-venv/bin/pip install torch==2.9.1 torchvision==0.24.1
    ../tia-venv/bin/pip install tiatoolbox==2.1.3
    python benchmarks/peer_tiatoolbox.py --size 512 --x 1000 --y 500

This script is also the TIAToolbox driver: ``--tia-python`` runs it as
``peer_tiatoolbox.py tia-driver ...``, which imports only torch and tiatoolbox.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SLIDE = HERE.parents[1].parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
TIA_PYTHON = HERE.parents[1].parent / "tia-venv" / "bin" / "python"  # beside the repository
MPP = 0.25  # HoVer-Net's native pixel size (40x), µm/px
NR_TYPES = 6
GIB = 2**30
MARK = "PEER_RESULT "


def to_tiatoolbox_key(key: str) -> str:
    """Official HoVer-Net checkpoint key (= nucscale's, after ``module.``) -> TIAToolbox's.

    TIAToolbox's ``HoVerNet`` keeps the official module names (``conv0./.weight``,
    ``d0.units.0.conv1/bn.weight``, ``decoder.np.u3.dense.units.0.preact_bna/bn.weight``,
    ``upsample2x.unpool_mat``...), so only the ``DataParallel`` prefix goes.
    """
    return key.removeprefix("module.")


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over the sorted keys, dtypes, shapes and bytes of a state dict's tensors."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- TIAToolbox side


def tia_driver(argv: list[str]) -> None:
    """Run in TIAToolbox's venv: load the checkpoint into its HoVerNet, segment, count."""
    ap = argparse.ArgumentParser(prog="peer_tiatoolbox.py tia-driver")
    ap.add_argument("crop", type=Path)
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-workers", type=int, default=1)
    args = ap.parse_args(argv)
    # this folder holds benchmark modules (models.py, reader.py...): keep them off the path
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]

    import tiatoolbox
    import torch
    import zarr
    from tiatoolbox.models.architecture.hovernet import HoVerNet
    from tiatoolbox.models.engine.io_config import IOInstanceSegmentorConfig
    from tiatoolbox.models.engine.multi_task_segmentor import MultiTaskSegmentor

    t0 = time.perf_counter()
    model = HoVerNet(num_types=NR_TYPES, mode="fast")
    official = torch.load(args.ckpt, map_location="cpu", weights_only=True)["desc"]
    state = {to_tiatoolbox_key(k): v for k, v in official.items()}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    assert not bad, f"shape mismatch: {bad[:5]}"
    model.load_state_dict(state, strict=True)
    digest = state_digest(model.state_dict())
    resolution = {"units": "mpp", "resolution": MPP}
    ioconfig = IOInstanceSegmentorConfig(
        input_resolutions=[resolution],
        output_resolutions=[resolution] * 3,
        margin=128,
        tile_shape=[1024, 1024],
        patch_input_shape=[256, 256],
        patch_output_shape=[164, 164],
        stride_shape=[164, 164],
        save_resolution=resolution,
    )
    engine = MultiTaskSegmentor(
        model=model,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device="cpu",
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    out = engine.run(
        [args.crop],
        patch_mode=False,
        ioconfig=ioconfig,
        save_dir=args.out,
        overwrite=True,
        output_type="zarr",
        auto_get_mask=False,
        wsireader_kwargs={"mpp": MPP},
    )
    run_s = time.perf_counter() - t0 - load_s
    (store,) = out.values()
    group = zarr.open_group(str(store), mode="r")
    keys = sorted(group.keys())

    def rows(key: str) -> int | None:
        arr = group[key] if key in keys else None
        return int(arr.shape[0]) if isinstance(arr, zarr.Array) else None

    nuclei = rows("centroid") or 0
    patches = rows("coordinates")
    record = {
        "nuclei": nuclei,
        "patches": patches,
        "zarr_keys": keys,
        "weights_digest": digest,
        "keys_loaded": len(state),
        "load_s": round(load_s, 2),
        "run_s": round(run_s, 2),
        "tiatoolbox": tiatoolbox.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(MARK + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- measurement


class TreeSampler:
    """Peak memory of a process tree: summed PSS and RSS, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak_pss = 0
        self.peak_rss = 0
        self.peak_single_rss = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            pss = rss = 0
            with contextlib.suppress(psutil.Error):
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        mem = p.memory_full_info()
                        pss += getattr(mem, "pss", mem.rss)
                        rss += mem.rss
                        self.peak_single_rss = max(self.peak_single_rss, mem.rss)
                        self.pids.add(p.pid)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.1)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_gib": round(self.peak_pss / GIB, 3),
            "peak_rss_sum_gib": round(self.peak_rss / GIB, 3),
            "max_process_rss_gib": round(self.peak_single_rss / GIB, 3),
            "processes": len(self.pids),
        }


def measure(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> tuple[dict, str]:
    """Run ``cmd``; wall seconds and peak memory of its tree, and its stdout."""
    t0 = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=err, env=env)
        sampler = TreeSampler(proc.pid)
        out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    mem = sampler.stop()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return {"wall_s": round(wall, 1), **mem}, out.decode(errors="replace")


# ------------------------------------------------------------------------------ benchmark


def machine() -> dict[str, Any]:
    """The machine record of the pipeline benchmark (imported here, in the project's
    environment: the TIAToolbox driver side of this script imports only torch and tiatoolbox)."""
    from pipeline import machine as pipeline_machine

    return pipeline_machine()


def make_inputs(work: Path, slide: Path, x: int, y: int, size: int) -> tuple[Path, Path, str]:
    """The crop (flat TIFF at 0.25 µm/px), the seeded official-format checkpoint, its digest
    as nucscale loads it (strictly)."""
    import torch

    from nucscale.io import open_slide, write_flat_tiff
    from nucscale.models.hovernet import HoVerNet, HoVerNetModule

    with open_slide(slide) as s:
        rgb = s.read_region(0, x, y, size, size)
    crop = work / "crop.tif"
    write_flat_tiff(rgb, crop, mpp=MPP)
    torch.manual_seed(0)
    module = HoVerNetModule("fast", NR_TYPES)
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    ckpt = work / "hovernet_fast_pannuke_type_seed0.tar"
    torch.save({"desc": state, "epoch": 0}, ckpt)
    loaded = HoVerNet("fast", NR_TYPES, "pannuke", weights=ckpt)  # strict: raises on mismatch
    return crop, ckpt, state_digest(loaded.module.state_dict())


def run_nucscale(work: Path, crop: Path, ckpt: Path, tile: int | None, env: dict) -> dict:
    from nucscale.store import read_manifest

    out = work / "nucscale_out"
    cmd = [
        sys.executable,
        "-m",
        "nucscale",
        "run",
        str(crop),
        "--out",
        str(out),
        "--model",
        "hovernet",
        "--weights",
        str(ckpt),
        "--workers",
        "1",
        "--threads",
        str(os.cpu_count() or 1),
        "--tissue",
        "none",
        "--dashboard",
        ":0",
    ]
    if tile:
        cmd += ["--tile", str(tile)]
    res, _ = measure(cmd, work, work / "nucscale.log", env)
    (row,) = read_manifest(out).values()
    if row.status != "done":
        raise RuntimeError(f"nucscale: {row.status}: {row.error}")
    return {
        **res,
        "nuclei": row.nuclei,
        "model_s": round(row.model_s or 0, 1),
        "analysis_mpp": row.analysis_mpp,
        "units": "µm/px: analysis_mpp, the TIFF's resolution tags (0.25)",
        "tile": tile or "default",
        "batch_size": 8,
    }


def run_tiatoolbox(
    work: Path, crop: Path, ckpt: Path, python: Path, batch: int, workers: int, env: dict
) -> dict:
    cmd = [
        str(python),
        str(HERE),
        "tia-driver",
        str(crop),
        str(ckpt),
        str(work / "tia_out"),
        "--batch-size",
        str(batch),
        "--num-workers",
        str(workers),
    ]
    res, stdout = measure(cmd, work, work / "tiatoolbox.log", env)
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        raise RuntimeError(f"no result from the TIAToolbox driver: {stdout[-2000:]}")
    driver = json.loads(lines[-1][len(MARK) :])
    return {
        **res,
        **driver,
        "engine": "MultiTaskSegmentor (WSI mode, zarr output)",
        "resolution": {"units": "mpp", "resolution": MPP},
        "units": "mpp (µm/px), input and output; reader told mpp=0.25",
        "batch_size": batch,
        "num_workers": workers,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512, help="crop side, px (level 0)")
    ap.add_argument("--x", type=int, default=1000)
    ap.add_argument("--y", type=int, default=500)
    ap.add_argument("--slide", type=Path, default=SLIDE)
    ap.add_argument("--tia-python", type=Path, default=TIA_PYTHON)
    ap.add_argument("--batch-size", type=int, default=8, help="TIAToolbox batch size")
    ap.add_argument("--tia-workers", type=int, default=1, help="TIAToolbox loader workers")
    ap.add_argument("--tile", type=int, default=None, help="nucscale --tile (default: its own)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep inputs and outputs here")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="peer_tia_"))
            work = Path(tmp)
        else:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        crop, ckpt, digest = make_inputs(work, args.slide, args.x, args.y, args.size)
        ns = run_nucscale(work, crop, ckpt, args.tile, env)
        tia = run_tiatoolbox(
            work, crop, ckpt, args.tia_python, args.batch_size, args.tia_workers, env
        )
    assert tia.pop("weights_digest") == digest, "TIAToolbox loaded other weights than nucscale"
    record = {
        "name": "peer_tiatoolbox",
        "slide": args.slide.name,
        "region": {"level": 0, "x": args.x, "y": args.y, "size": args.size, "written_mpp": MPP},
        "model": f"hovernet fast, {NR_TYPES} types, seeded random weights (manual_seed 0)",
        "weights_sha256": digest,
        "nucscale_s": ns["wall_s"],
        "tiatoolbox_s": tia["wall_s"],
        "nucscale_peak_gib": ns["peak_gib"],
        "tiatoolbox_peak_gib": tia["peak_gib"],
        "nucscale_nuclei": ns["nuclei"],
        "tiatoolbox_nuclei": tia["nuclei"],
        "wall_ratio": round(tia["wall_s"] / ns["wall_s"], 3),
        "memory_ratio": round(tia["peak_gib"] / ns["peak_gib"], 3),
        "target_met": ns["wall_s"] < tia["wall_s"],
        "nucscale": ns,
        "tiatoolbox": tia,
        "machine": machine(),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "tia-driver":
        tia_driver(sys.argv[2:])
    else:
        main()
