"""Quick evaluation of a trained U-Net: whole images through the sliding-window engine.

Images are at the model's pixel size (``load_samples(..., mpp=model.mpp)``). Each is padded
with its modality's background (255 for brightfield, 0 for fluorescence, as the tile store
pads), run through ``predict_image`` on the model's global patch grid with the image's own
calibration (as the pipeline computes a slide's), post-processed, and scored against its
instance labels (PQ, AJI, foreground Dice). ``benchmarks/heldout.py`` scores the real path
instead: each image through ``nucscale run --mpp``, predictions back at the image's own size.
"""

from __future__ import annotations

import itertools
from os import PathLike
from typing import Any

import numpy as np

from nucscale.analysis import aggregated_jaccard_index, dice, panoptic_quality
from nucscale.contracts import DenseModel
from nucscale.infer._engine import predict_image
from nucscale.train._data import Sample, load_samples, load_split

#: Post-processing thresholds :func:`tune_postprocess` tries (foreground, boundary).
FG_THRESHOLDS = (0.4, 0.5, 0.6)
BOUNDARY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_MARKERS = (2, 8, 24)
#: Marker modes tried with a centre-distance map: ``None`` (markers from the boundary alone)
#: or the centre-distance cut-off.
DIST_THRESHOLDS = (None, 0.3, 0.45, 0.6)
#: Smallest centre-distance peak an instance needs (``None``: no such rule), tried after the
#: grid above with its best setting fixed.
MIN_CORES = (None, 0.3, 0.4, 0.5, 0.55, 0.6)


def background_of(modality: str) -> int:
    """Padding value beyond an image: 255 (glass) for brightfield, else 0 (dark)."""
    return 255 if modality.startswith("brightfield") else 0


def for_modality(model: Any, modality: str) -> Any:
    """``model`` reading images of ``modality`` (models without modalities as they are)."""
    if hasattr(model, "with_modality"):
        return model.with_modality(
            "brightfield" if modality.startswith("brightfield") else "fluorescence"
        )
    return model


def image_maps(model: DenseModel, rgb: np.ndarray, modality: str) -> np.ndarray:
    """Maps of a whole image, calibrated on itself, padded with its modality's background."""
    return predict_image(for_modality(model, modality), rgb, background=background_of(modality))


def score_image(
    model: DenseModel, rgb: np.ndarray, labels: np.ndarray, modality: str
) -> dict[str, float]:
    """PQ / DQ / SQ, AJI and foreground Dice of ``model`` on one labelled image."""
    maps = image_maps(model, rgb, modality)
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
    samples = load_samples(data, ids if ids is not None else held, modality, mpp=model.mpp)
    per_image = {s.id: score_image(model, s.image, s.labels, s.modality) for s in samples}
    by_mod: dict[str, dict[str, float]] = {}
    for mod in sorted({s.modality for s in samples}):
        rows = [per_image[s.id] for s in samples if s.modality == mod]
        by_mod[mod] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        by_mod[mod]["images"] = float(len(rows))
    return {"per_image": per_image, "per_modality": by_mod}


def tune_postprocess(model: Any, samples: list[Sample]) -> dict[str, float]:
    """Post-processing thresholds that maximise PQ on ``samples``.

    Tries ``FG_THRESHOLDS`` x ``BOUNDARY_THRESHOLDS`` x ``MIN_MARKERS`` x ``DIST_THRESHOLDS``
    (the last only for three-output weights), then, with the best of those fixed, each of
    ``MIN_CORES`` (three-output weights). Meant for the *training* images (the held-out
    ones stay unseen). The score is the mean over modalities of the mean PQ per image, so a
    rare modality (H&E is 8 of 49 DSB images) weighs as much as a common one. Maps are
    computed once per image; ties keep the first setting in that order.
    """
    maps = [image_maps(model, s.image, s.modality) for s in samples]
    dists = DIST_THRESHOLDS if maps and maps[0].shape[0] > 2 else (None,)
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for fg_t, bd_t, marker, dist_t in itertools.product(
        FG_THRESHOLDS, BOUNDARY_THRESHOLDS, MIN_MARKERS, dists
    ):
        setting = {"fg_threshold": fg_t, "boundary_threshold": bd_t, "min_marker": float(marker)}
        if dist_t is not None:
            setting["dist_threshold"] = dist_t
        score = _mean_pq(model, samples, maps, setting)
        if score > best[0]:
            best = (score, setting)
    if maps and maps[0].shape[0] > 2:
        for core in MIN_CORES[1:]:
            setting = {**best[1], "min_core": core}
            score = _mean_pq(model, samples, maps, setting)
            if score > best[0]:
                best = (score, setting)
    return {**best[1], "train_pq": best[0]}


def _mean_pq(
    model: Any, samples: list[Sample], maps: list[np.ndarray], setting: dict[str, float]
) -> float:
    """Mean over modalities of the mean PQ per image of one post-processing setting."""
    from nucscale.models._unet_post import unet_instances

    pqs: dict[str, list[float]] = {}
    for s, mp in zip(samples, maps, strict=True):
        marker = setting.get("min_marker")
        pred = unet_instances(
            mp[0],
            mp[1],
            dist=mp[2] if mp.shape[0] > 2 else None,
            fg_threshold=setting["fg_threshold"],
            boundary_threshold=setting["boundary_threshold"],
            dist_threshold=setting.get("dist_threshold"),
            min_area=model.min_area,
            max_diameter=model.max_nucleus_diameter,
            min_marker=None if marker is None else int(marker),
            min_core=setting.get("min_core"),
        ).labels
        pqs.setdefault(s.modality, []).append(float(panoptic_quality(s.labels, pred)["pq"]))
    return float(np.mean([np.mean(v) for v in pqs.values()]))
