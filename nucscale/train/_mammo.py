"""Training the mammogram mass U-Net on an index's (preprocessed mammogram, summed mask) pairs,
and scoring it (Dice and IoU per image).

Small data by nature (a CBIS-DDSM view has one mammogram): each step draws whole preprocessed
images, flipped top-bottom at random (orientation is normalised, so left-right is not), shifted
by up to 1/16 of the side and with gamma and contrast jitter. Loss: BCE + soft Dice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from nucscale.analysis._mammo import dice_iou
from nucscale.archive._mammo import apply_geometry, preprocess
from nucscale.archive._read import read_mammogram
from nucscale.errors import InputError
from nucscale.models.mammo import weights_dict
from nucscale.models.unet import UNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One training or evaluation image: network input and its label, both (size, size)."""

    sop_instance_uid: str
    image: np.ndarray  # float32 in [0, 1]
    label: np.ndarray  # uint8 0/1


def load_pairs(index: pd.DataFrame, size: int, source: Path) -> list[Pair]:
    """The full mammograms of an index that have a summed label, preprocessed."""
    fulls = index[(index["role"] == "full") & index["label_path"].notna()]
    if fulls.empty:
        raise InputError(source, "no full mammogram with masks in this index (nothing to learn)")
    pairs = []
    for _, row in fulls.iterrows():
        m = read_mammogram(row["path"])
        prepared = preprocess(m.pixels, size=size, photometric=m.photometric,
                              bits_stored=m.bits_stored, window=m.window,
                              laterality=m.laterality)  # fmt: skip
        label = np.asarray(Image.open(row["label_path"])) > 0
        small = apply_geometry(label.astype(np.uint8), prepared.geometry)
        pairs.append(Pair(row["sop_instance_uid"], prepared.network, small))
    return pairs


def _augment(pair: Pair, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image, label = pair.image, pair.label
    if rng.random() < 0.5:
        image, label = image[::-1], label[::-1]
    limit = image.shape[0] // 16
    dy, dx = rng.integers(-limit, limit + 1, size=2)
    image, label = _shift(image, dy, dx), _shift(label, dy, dx)
    gamma = rng.uniform(0.7, 1.4)
    contrast = rng.uniform(0.8, 1.2)
    image = np.clip(contrast * image**gamma, 0, 1).astype(np.float32)
    return image, label


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (with logits) + soft Dice over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def train_mammo(
    pairs: list[Pair],
    *,
    steps: int = 400,
    batch: int = 4,
    lr: float = 2e-3,
    depth: int = 4,
    width: int = 8,
    seed: int = 0,
    threads: int = 2,
    progress: Callable[[int, float], None] | None = None,
) -> UNet:
    """A U-Net (1 input channel, 1 output) trained on ``pairs``; deterministic per seed."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    net = UNet(depth=depth, width=width, in_channels=1, out_channels=1)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for step in range(1, steps + 1):
        picks = rng.integers(len(pairs), size=batch)
        images, labels = zip(*(_augment(pairs[i], rng) for i in picks), strict=True)
        x = torch.from_numpy(np.stack(images)[:, None].copy())
        y = torch.from_numpy(np.stack(labels)[:, None].astype(np.float32))
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress(step, float(loss.detach()))
    net.eval()
    return net


def save_mammo_weights(net: UNet, path: Path, size: int, trained_on: str) -> Path:
    """Write the weights file (atomically)."""
    from nucscale.store import atomic_write

    data = weights_dict(net, size, 0.5, trained_on)
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    return path


def score(net: UNet, pairs: list[Pair], threshold: float = 0.5) -> list[tuple[str, float, float]]:
    """(SOP Instance UID, Dice, IoU) of each pair at the network's input size."""
    out = []
    for p in pairs:
        x = torch.from_numpy(np.ascontiguousarray(p.image))[None, None]
        with torch.inference_mode():
            prob = torch.sigmoid(net(x))[0, 0].numpy()
        dice, iou = dice_iou(prob >= threshold, p.label)
        out.append((p.sop_instance_uid, dice, iou))
    return out
