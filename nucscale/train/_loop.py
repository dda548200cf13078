"""The training loop: random augmented patches, BCE + Dice, AdamW, checkpoints, resume.

Images are resampled to the analysis pixel size first (``cfg.mpp``; each image's own pixel size
from ``index.json`` or the rule of :mod:`nucscale.train._scale`). Each patch of a batch is one of
four kinds, drawn with fixed shares: a real H&E image, a fluorescence image, a fluorescence image
rendered as H&E on an eosin texture (:mod:`nucscale.train._stain`), or bare glass from an
unlabelled slide (:mod:`nucscale.train._negatives`, with ``cfg.negatives``).

Determinism: the network is initialised from ``torch.manual_seed(seed)``, and the patches of
step ``k`` come from ``numpy.random.default_rng([seed, k])``, so a run resumed from a
checkpoint at step ``k`` sees exactly the batches an uninterrupted run would have seen.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"state_dict", "config", "normalisation", "mpp", "plausibility", "optimizer", "step",
     "steps", "seed", "patch", "batch", "lr", "scale", "shares", "negatives",
     "pixel_sizes", "split": {"train": [...], "heldout": [...]}, "init"}

plus ``"postprocess"`` (thresholds) once :func:`tune_checkpoint` has run.

:func:`export_weights` strips it to the file :class:`nucscale.models.unet.UNetModel` ships
(no optimizer state).

Plausibility (``"plausibility"``, applied by the model's post-processing, in µm² so it holds at
any pixel size): ``min_area_um2`` is the 1st percentile of the areas of the training nuclei that
do not touch their image's edge (edge-cut nuclei are partial), at their true scale.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nucscale.errors import InputError
from nucscale.models._unet_input import NORMALISATION, intensity_range
from nucscale.models.unet import DEFAULT_CONFIG, UNet
from nucscale.train._augment import augment
from nucscale.train._data import Sample, load_samples, load_split, targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (all recorded in the checkpoint)."""

    steps: int = 2000
    patch: int = 256
    batch: int = 8
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 100
    brightfield_share: float = 0.3
    synthetic_share: float = 0.32
    glass_share: float = 0.06
    scale_min: float = 0.8
    scale_max: float = 1.25
    threads: int = 2
    depth: int = DEFAULT_CONFIG["depth"]
    width: int = DEFAULT_CONFIG["width"]
    out_channels: int = 3
    mpp: float = 0.5
    negatives: tuple[str, ...] = ()
    #: Weights file to start from (a fine-tune); its architecture replaces depth/width.
    init: str | None = None


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (with logits) + soft Dice on foreground and boundary; BCE alone on the centre
    distance (a soft target in [0, 1], not a region), when there is one."""
    seg = slice(0, min(2, logits.shape[1]))
    bce = F.binary_cross_entropy_with_logits(logits[:, seg], target[:, seg])
    p = torch.sigmoid(logits[:, seg])
    t = target[:, seg]
    inter = (p * t).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    loss = bce + dice.mean()
    if logits.shape[1] > 2:
        loss = loss + F.binary_cross_entropy_with_logits(logits[:, 2:], target[:, 2:])
    return loss


@dataclass(frozen=True)
class Pools:
    """The training material by kind, each with its images' intensity ranges."""

    brightfield: list[Sample]
    fluorescence: list[Sample]
    glass: list[Sample]
    ranges: dict[str, dict[str, float]]

    def shares(self, cfg: TrainConfig) -> dict[str, float]:
        """Share of each kind in a batch (kinds without material get none; rest rescaled)."""
        raw = {
            "brightfield": cfg.brightfield_share if self.brightfield else 0.0,
            "synthetic_he": cfg.synthetic_share if self.fluorescence else 0.0,
            "glass": cfg.glass_share if self.glass else 0.0,
        }
        rest = max(0.0, 1.0 - sum(raw.values())) if self.fluorescence else 0.0
        raw["fluorescence"] = rest
        total = sum(raw.values())
        if total <= 0:
            raise InputError("training data", "no images to train on")
        return {k: v / total for k, v in raw.items()}


def make_pools(samples: list[Sample], glass: list[Sample]) -> Pools:
    """Split samples by modality; intensity ranges of the fluorescence images (whole image,
    as the pipeline's slide-level calibration)."""
    bf = [s for s in samples if s.modality.startswith("brightfield")]
    fl = [s for s in samples if not s.modality.startswith("brightfield")]
    ranges = {s.id: intensity_range(s.image) for s in fl}
    return Pools(bf, fl, glass, ranges)


def make_batch(pools: Pools, cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (deterministic) batch of ``step``: inputs (B, 3, P, P), targets (B, K, P, P)."""
    rng = np.random.default_rng([cfg.seed, step])
    shares = pools.shares(cfg)
    kinds = list(shares)
    probs = np.array([shares[k] for k in kinds])
    imgs, tgts = [], []
    scale = (cfg.scale_min, cfg.scale_max)
    for _ in range(cfg.batch):
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        if kind in ("brightfield", "glass"):
            pool = pools.brightfield if kind == "brightfield" else pools.glass
            s = pool[int(rng.integers(len(pool)))]
            x, lab = augment(s.image, s.labels, "brightfield", cfg.patch, rng, scale=scale)
        else:
            s = pools.fluorescence[int(rng.integers(len(pools.fluorescence)))]
            cal = pools.ranges[s.id]
            x, lab = augment(s.image, s.labels, kind, cfg.patch, rng, calibration=cal, scale=scale)
        imgs.append(x)
        tgts.append(targets(lab, cfg.out_channels))
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2)
    return batch.contiguous(), torch.from_numpy(np.stack(tgts))


def min_area_um2(samples: list[Sample], mpp: float, percentile: float = 1.0) -> float:
    """``percentile`` of the areas (µm²) of nuclei not touching their image's edge."""
    areas: list[np.ndarray] = []
    for s in samples:
        lab = s.labels
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        counts = np.bincount(lab.ravel())
        ids = np.setdiff1d(np.flatnonzero(counts), np.append(edge, 0))
        areas.append(counts[ids] * mpp * mpp)
    joined = np.concatenate(areas) if areas else np.zeros(0)
    return round(float(np.percentile(joined, percentile)), 2) if joined.size else 0.0


def _lr(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up (50 steps, or a tenth of a short run), cosine decay to 5 % of ``lr``."""
    warm = min(50, max(1, cfg.steps // 10))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = min(1.0, step / max(1, cfg.steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _save(path: Path, obj: dict[str, Any]) -> None:
    """Write atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    data: str | PathLike[str],
    out: str | PathLike[str],
    cfg: TrainConfig,
    *,
    resume: bool = False,
    until: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a U-Net on ``data`` (see :mod:`nucscale.train._data`), checkpointing to ``out``.

    Parameters
    ----------
    data:
        Folder of ``<id>_image.png`` + ``<id>_labels.png`` pairs.
    out:
        Checkpoint path, rewritten every ``cfg.checkpoint_every`` steps and at the end.
    cfg:
        Hyper-parameters.
    resume:
        Continue from ``out`` (its step, weights and optimizer state).
    until:
        Stop (and checkpoint) at this step, before ``cfg.steps``; the learning-rate schedule
        still spans ``cfg.steps``, so resuming later continues the same run.
    progress:
        Called as ``progress(step, loss)`` after every step.

    Returns
    -------
    dict
        The final checkpoint.
    """
    torch.set_num_threads(cfg.threads)
    out_path = Path(out)
    train_ids, held_ids, modality = load_split(data)
    if not train_ids:
        raise InputError(data, "no training images left after the hold-out split")
    samples = load_samples(data, train_ids, modality, mpp=cfg.mpp)
    glass = _glass(cfg)
    pools = make_pools(samples, glass)
    log.info(
        "training on %d H&E, %d fluorescence images, %d glass patches at %g µm/px; shares %s",
        len(pools.brightfield),
        len(pools.fluorescence),
        len(glass),
        cfg.mpp,
        pools.shares(cfg),
    )
    plausibility = {"min_area_um2": min_area_um2(samples, cfg.mpp)}
    sizes = {s.id: [s.mpp, s.mpp_source] for s in samples}
    torch.manual_seed(cfg.seed)
    init = _initial_weights(cfg)
    if init is not None:
        arch = init["config"]
        cfg = replace(
            cfg, depth=arch["depth"], width=arch["width"], out_channels=arch["out_channels"]
        )
    net = UNet(cfg.depth, cfg.width, 3, cfg.out_channels)
    if init is not None and not resume:
        net.load_state_dict(init["state_dict"])
    if cfg.patch % net.multiple:
        raise InputError(data, f"--patch must be a multiple of {net.multiple}, got {cfg.patch}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    started_from = None if init is None else init["provenance"]
    if resume:
        if not out_path.is_file():
            raise InputError(out_path, "no checkpoint to resume from; drop --resume")
        ck = torch.load(out_path, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        started_from = ck.get("init", started_from)
        log.info("resuming %s at step %d", out_path, step)

    def checkpoint() -> dict[str, Any]:
        ck = {
            "state_dict": net.state_dict(),
            "config": dict(net.config),
            "normalisation": NORMALISATION,
            "mpp": cfg.mpp,
            "plausibility": plausibility,
            "optimizer": opt.state_dict(),
            "step": step,
            "steps": cfg.steps,
            "seed": cfg.seed,
            "patch": cfg.patch,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "scale": [cfg.scale_min, cfg.scale_max],
            "shares": pools.shares(cfg),
            "negatives": [Path(p).name for p in cfg.negatives],
            "pixel_sizes": sizes,
            "split": {"train": train_ids, "heldout": held_ids},
            "init": started_from,
        }
        _save(out_path, ck)
        return ck

    net.train()
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    t0 = time.perf_counter()
    stop = cfg.steps if until is None else min(until, cfg.steps)
    # batch k depends only on (seed, k): cutting the next one in a thread changes nothing
    pool = ThreadPoolExecutor(1, thread_name_prefix="nucscale-batch")
    try:
        pending = pool.submit(make_batch, pools, cfg, step) if step < stop else None
        while pending is not None:
            x, y = pending.result()
            pending = pool.submit(make_batch, pools, cfg, step + 1) if step + 1 < stop else None
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, step)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            step += 1
            if progress is not None:
                progress(step, float(loss.detach()))
            if step % cfg.checkpoint_every == 0 and step < stop:
                checkpoint()
    finally:
        pool.shutdown(cancel_futures=True)
    log.info("trained to step %d in %.0f s", step, time.perf_counter() - t0)
    return checkpoint()


def _initial_weights(cfg: TrainConfig) -> dict[str, Any] | None:
    """The weights ``cfg.init`` names (state dict, architecture, provenance), or ``None``.

    A fine-tune starts from them with a fresh optimizer and its own learning-rate schedule;
    the checkpoint records the file's name, sha256 and the step it had reached.
    """
    if cfg.init is None:
        return None
    from nucscale.models._checkpoint import sha256_file
    from nucscale.models.unet import read_weights

    data = read_weights(cfg.init)
    arch = {**DEFAULT_CONFIG, **data["config"]}
    if arch["in_channels"] != 3:
        raise InputError(cfg.init, f"weights take {arch['in_channels']} channels; training uses 3")
    provenance = {
        "file": Path(cfg.init).name,
        "sha256": sha256_file(cfg.init),
        "step": int(data.get("step", 0)),
    }
    return {"state_dict": data["state_dict"], "config": arch, "provenance": provenance}


def _glass(cfg: TrainConfig) -> list[Sample]:
    """Glass negatives from every slide of ``cfg.negatives``."""
    from nucscale.train._negatives import glass_samples

    out: list[Sample] = []
    for i, path in enumerate(cfg.negatives):
        out += glass_samples(path, cfg.mpp, seed=cfg.seed + i)
    return out


def tune_checkpoint(data: str | PathLike[str], checkpoint: str | PathLike[str]) -> dict[str, float]:
    """Tune the post-processing thresholds on the checkpoint's training images; store them."""
    from nucscale.models.unet import UNetModel
    from nucscale.train._evaluate import tune_postprocess

    path = Path(checkpoint)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    _, _, modality = load_split(data)
    samples = load_samples(data, list(ck["split"]["train"]), modality, mpp=float(ck["mpp"]))
    tuned = tune_postprocess(UNetModel(path), samples)
    ck["postprocess"] = tuned
    _save(path, ck)
    return tuned


def export_weights(checkpoint: str | PathLike[str], dest: str | PathLike[str]) -> Path:
    """Write the slim weights file (no optimizer state) of a training checkpoint."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    keys = (
        "state_dict",
        "config",
        "normalisation",
        "mpp",
        "plausibility",
        "step",
        "split",
        "postprocess",
        "scale",
        "shares",
        "pixel_sizes",
        "init",
        "lr",
        "steps",
        "seed",
    )
    slim = {k: ck[k] for k in keys if k in ck}
    dest_path = Path(dest)
    _save(dest_path, slim)
    return dest_path
