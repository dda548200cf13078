"""The training loop: random augmented patches, BCE + Dice, AdamW, checkpoints, resume.

Determinism: the network is initialised from ``torch.manual_seed(seed)``, and the patches of
step ``k`` come from ``numpy.random.default_rng([seed, k])``, so a run resumed from a
checkpoint at step ``k`` sees exactly the batches an uninterrupted run would have seen.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"state_dict", "config", "normalisation", "optimizer", "step", "steps", "seed",
     "patch", "batch", "lr", "scale", "split": {"train": [...], "heldout": [...]}}

plus ``"postprocess"`` (thresholds) once :func:`tune_checkpoint` has run.

:func:`export_weights` strips it to ``{"state_dict", "config", "normalisation", "step",
"split"}``, the file :class:`nucscale.models.unet.UNetModel` ships.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nucscale.errors import InputError
from nucscale.models.unet import DEFAULT_CONFIG, NORMALISATION, UNet, normalise
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
    brightfield_share: float = 0.4
    scale_min: float = 0.5
    scale_max: float = 1.6
    threads: int = 2
    depth: int = DEFAULT_CONFIG["depth"]
    width: int = DEFAULT_CONFIG["width"]


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-channel BCE (with logits) + soft Dice, averaged over channels."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    return bce + dice.mean()


def _weights(samples: list[Sample], brightfield_share: float) -> np.ndarray:
    """Sampling probability per image: ``brightfield_share`` to brightfield when both exist."""
    bf = np.array([s.modality.startswith("brightfield") for s in samples])
    if not bf.any() or bf.all():
        return np.full(len(samples), 1.0 / len(samples))
    return np.where(bf, brightfield_share / bf.sum(), (1 - brightfield_share) / (~bf).sum())


def make_batch(
    samples: list[Sample], probs: np.ndarray, cfg: TrainConfig, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (deterministic) batch of ``step``: inputs (B, 3, P, P) and targets (B, 2, P, P)."""
    rng = np.random.default_rng([cfg.seed, step])
    imgs, tgts = [], []
    for _ in range(cfg.batch):
        s = samples[int(rng.choice(len(samples), p=probs))]
        scale = (cfg.scale_min, cfg.scale_max)
        img, lab = augment(s.image, s.labels, s.modality, cfg.patch, rng, scale=scale)
        imgs.append(img)
        tgts.append(targets(lab))
    return normalise(np.stack(imgs)), torch.from_numpy(np.stack(tgts))


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
    samples = load_samples(data, train_ids, modality)
    probs = _weights(samples, cfg.brightfield_share)
    torch.manual_seed(cfg.seed)
    net = UNet(cfg.depth, cfg.width, 3, 2)
    if cfg.patch % net.multiple:
        raise InputError(data, f"--patch must be a multiple of {net.multiple}, got {cfg.patch}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if resume:
        if not out_path.is_file():
            raise InputError(out_path, "no checkpoint to resume from; drop --resume")
        ck = torch.load(out_path, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        log.info("resuming %s at step %d", out_path, step)

    def checkpoint() -> dict[str, Any]:
        ck = {
            "state_dict": net.state_dict(),
            "config": dict(net.config),
            "normalisation": NORMALISATION,
            "optimizer": opt.state_dict(),
            "step": step,
            "steps": cfg.steps,
            "seed": cfg.seed,
            "patch": cfg.patch,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "scale": [cfg.scale_min, cfg.scale_max],
            "split": {"train": train_ids, "heldout": held_ids},
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
        pending = pool.submit(make_batch, samples, probs, cfg, step) if step < stop else None
        while pending is not None:
            x, y = pending.result()
            pending = (
                pool.submit(make_batch, samples, probs, cfg, step + 1) if step + 1 < stop else None
            )
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


def tune_checkpoint(data: str | PathLike[str], checkpoint: str | PathLike[str]) -> dict[str, float]:
    """Tune the post-processing thresholds on the checkpoint's training images; store them."""
    from nucscale.models.unet import UNetModel
    from nucscale.train._evaluate import tune_postprocess

    path = Path(checkpoint)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    _, _, modality = load_split(data)
    samples = load_samples(data, list(ck["split"]["train"]), modality)
    tuned = tune_postprocess(UNetModel(path), samples)
    ck["postprocess"] = tuned
    _save(path, ck)
    return tuned


def export_weights(checkpoint: str | PathLike[str], dest: str | PathLike[str]) -> Path:
    """Write the slim weights file (no optimizer state) of a training checkpoint."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    keys = ("state_dict", "config", "normalisation", "step", "split", "postprocess", "scale")
    slim = {k: ck[k] for k in keys if k in ck}
    dest_path = Path(dest)
    _save(dest_path, slim)
    return dest_path
