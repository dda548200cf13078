"""Held-out evaluation of a trained U-Net: whole images through the sliding-window engine.

Each image is padded with its modality's background (255 for brightfield, 0 for
fluorescence, as the tile store pads), run through ``predict_image`` on the model's global
patch grid, post-processed, and scored against its instance labels (PQ, AJI, foreground Dice).
"""

from __future__ import annotations

import itertools
from os import PathLike
from typing import Any

import numpy as np

from nucscale.analysis import aggregated_jaccard_index, dice, panoptic_quality
from nucscale.infer._engine import predict_image
from nucscale.models._base import DenseModel
from nucscale.train._data import Sample, load_samples, load_split

#: Post-processing thresholds :func:`tune_postprocess` tries (foreground, boundary).
FG_THRESHOLDS = (0.4, 0.5, 0.6)
BOUNDARY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_MARKERS = (2, 8, 24)


def background_of(modality: str) -> int:
    """Padding value beyond an image: 255 (glass) for brightfield, else 0 (dark)."""
    return 255 if modality.startswith("brightfield") else 0


def score_image(
    model: DenseModel, rgb: np.ndarray, labels: np.ndarray, modality: str
) -> dict[str, float]:
    """PQ / DQ / SQ, AJI and foreground Dice of ``model`` on one labelled image."""
    maps = predict_image(model, rgb, background=background_of(modality))
    pred = model.postprocess(maps).labels
    pq = panoptic_quality(labels, pred)
    return {
        "pq": float(pq["pq"]),
        "dq": float(pq["dq"]),
        "sq": float(pq["sq"]),
        "aji": float(aggregated_jaccard_index(labels, pred)),
        "dice": float(dice(labels, pred)),
        "fg_dice_map": float(dice(labels, maps[0] >= 0.5)),
    }


def evaluate_heldout(
    model: DenseModel, data: str | PathLike[str], ids: list[str] | None = None
) -> dict[str, Any]:
    """Per-image scores and per-modality means over the held-out ids of ``data``."""
    _, held, modality = load_split(data)
    samples = load_samples(data, ids if ids is not None else held, modality)
    per_image = {s.id: score_image(model, s.image, s.labels, s.modality) for s in samples}
    by_mod: dict[str, dict[str, float]] = {}
    for mod in sorted({s.modality for s in samples}):
        rows = [per_image[s.id] for s in samples if s.modality == mod]
        by_mod[mod] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        by_mod[mod]["images"] = float(len(rows))
    return {"per_image": per_image, "per_modality": by_mod}


def tune_postprocess(model: Any, samples: list[Sample]) -> dict[str, float]:
    """Foreground and boundary thresholds and smallest marker that maximise PQ on ``samples``.

    Meant for the *training* images (the held-out ones stay unseen). The score is the mean
    over modalities of the mean PQ per image, so a rare modality (H&E is 8 of 49 DSB images)
    weighs as much as a common one. Maps are computed once per image; ties keep the first
    setting in ``FG_THRESHOLDS`` x ``BOUNDARY_THRESHOLDS`` x ``MIN_MARKERS`` order.
    """
    from nucscale.models._unet_post import unet_instances

    maps = [predict_image(model, s.image, background=background_of(s.modality)) for s in samples]
    modalities = sorted({s.modality for s in samples})
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for fg_t, bd_t, marker in itertools.product(FG_THRESHOLDS, BOUNDARY_THRESHOLDS, MIN_MARKERS):
        pqs: dict[str, list[float]] = {m: [] for m in modalities}
        for s, mp in zip(samples, maps, strict=True):
            pred = unet_instances(
                mp[0],
                mp[1],
                fg_threshold=fg_t,
                boundary_threshold=bd_t,
                min_area=model.min_area,
                max_diameter=model.max_nucleus_diameter,
                min_marker=marker,
            ).labels
            pqs[s.modality].append(float(panoptic_quality(s.labels, pred)["pq"]))
        score = float(np.mean([np.mean(v) for v in pqs.values()]))
        if score > best[0]:
            best = (
                score,
                {
                    "fg_threshold": fg_t,
                    "boundary_threshold": bd_t,
                    "min_marker": float(marker),
                    "train_pq": score,
                },
            )
    return best[1]
