"""Instance-segmentation metrics: PQ (and mPQ), AJI, foreground Dice and the DSB 2018 score.

Every metric starts from one sparse GT x prediction contingency table (:func:`overlaps`): the
paired labels of all pixels are reduced with ``np.unique`` to the overlapping (gt, pred) pairs
and their intersection areas, so the cost is one pass over the pixels plus a sort; there is no
Python loop over instances or pairs, and labels need not be consecutive.

Conventions
-----------
- Label 0 is background; any other value is an instance.
- Matching for PQ and the DSB score is at IoU *strictly greater* than the threshold; for
  thresholds >= 0.5 a GT instance can match at most one prediction and vice versa
  (Kirillov et al., "Panoptic Segmentation", CVPR 2019), so no assignment problem is solved.
- Empty images: when both GT and prediction are empty, PQ, DQ, SQ, Dice, AJI and the DSB score
  are 1.0 (a perfect answer); when exactly one is empty they are 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: IoU thresholds of the 2018 Data Science Bowl metric: 0.5, 0.55, ..., 0.95.
DSB_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


@dataclass(frozen=True)
class Overlaps:
    """The non-empty cells of the GT x prediction contingency table.

    Attributes
    ----------
    gt_ids, pred_ids:
        Instance labels present (sorted, 0 excluded).
    gt_area, pred_area:
        Pixel count of each of them.
    pair_gt, pair_pred:
        Indices into ``gt_ids`` / ``pred_ids`` of every overlapping pair.
    inter, iou:
        Intersection area and IoU of each pair.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    inter: np.ndarray
    iou: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)


def _index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids (0 excluded) and each pixel's index into ``[0] + ids``."""
    ids, inv = np.unique(labels.ravel(), return_inverse=True)
    if ids.size and ids[0] == 0:
        return ids[1:], inv
    return ids, inv + 1  # no background pixel: shift so that index 0 stays "background"


def _check(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape} vs prediction {pred.shape}")
    for name, a in (("ground truth", gt), ("prediction", pred)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} labels must be integers, got {a.dtype}")
    return gt, pred


def overlaps(gt: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Sparse contingency table of two instance label images of the same shape.

    Raises
    ------
    ValueError
        The shapes differ or the labels are not integers.
    """
    gt, pred = _check(gt, pred)
    gt_ids, g = _index(gt)
    pred_ids, p = _index(pred)
    n_p = pred_ids.size + 1
    keys, counts = np.unique(g.astype(np.int64) * n_p + p, return_counts=True)
    kg, kp = keys // n_p, keys % n_p
    gt_area = np.zeros(gt_ids.size + 1, np.int64)
    pred_area = np.zeros(n_p, np.int64)
    np.add.at(gt_area, kg, counts)
    np.add.at(pred_area, kp, counts)
    both = (kg > 0) & (kp > 0)
    pg, pp, inter = kg[both] - 1, kp[both] - 1, counts[both].astype(np.int64)
    union = gt_area[1:][pg] + pred_area[1:][pp] - inter
    return Overlaps(
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        gt_area=gt_area[1:],
        pred_area=pred_area[1:],
        pair_gt=pg,
        pair_pred=pp,
        inter=inter,
        iou=inter / np.maximum(union, 1),
    )


def match_instances(
    gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniquely matched (gt label, pred label, IoU) triples at IoU > ``iou_threshold`` (>= 0.5)."""
    _check_threshold(iou_threshold)
    ov = overlaps(gt, pred)
    m = ov.iou > iou_threshold
    return ov.gt_ids[ov.pair_gt[m]], ov.pred_ids[ov.pair_pred[m]], ov.iou[m]


def _check_threshold(t: float) -> None:
    if not 0.5 <= t < 1.0:
        raise ValueError(f"iou_threshold must be in [0.5, 1) for unique matching, got {t}")


def _pq_from(ov: Overlaps, keep_gt: np.ndarray, keep_pred: np.ndarray, t: float) -> dict[str, Any]:
    """PQ over the GT / pred instances selected by the boolean masks."""
    sel = keep_gt[ov.pair_gt] & keep_pred[ov.pair_pred] & (ov.iou > t)
    tp = int(sel.sum())
    n_gt, n_pred = int(keep_gt.sum()), int(keep_pred.sum())
    fp, fn = n_pred - tp, n_gt - tp
    if n_gt == 0 and n_pred == 0:
        dq = sq = 1.0
    else:
        dq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = float(ov.iou[sel].mean()) if tp else 0.0
    return {"pq": dq * sq, "dq": dq, "sq": sq, "tp": tp, "fp": fp, "fn": fn}


def panoptic_quality(
    gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, Any]:
    """Panoptic quality of a prediction (Kirillov et al. 2019), single class.

    Parameters
    ----------
    gt, pred:
        Instance label images of the same shape (0 = background).
    iou_threshold:
        A pair matches when its IoU is strictly above this (must be >= 0.5).

    Returns
    -------
    dict
        ``pq = dq * sq``, ``dq = TP / (TP + FP/2 + FN/2)``, ``sq`` = mean IoU of the matches,
        and the counts ``tp``, ``fp``, ``fn``.
    """
    _check_threshold(iou_threshold)
    ov = overlaps(gt, pred)
    return _pq_from(ov, np.ones(ov.n_gt, bool), np.ones(ov.n_pred, bool), iou_threshold)


def aggregated_jaccard_index(gt: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017).

    Each GT instance is paired with the prediction of highest IoU with it (ties: lowest label);
    intersections and unions of these pairs are summed (a GT with no overlap adds its area to
    the union), then the areas of predictions never chosen are added to the union. As in the
    original definition a prediction may be chosen by several GT instances.
    """
    return _aji_from(overlaps(gt, pred))


def _aji_from(ov: Overlaps) -> float:
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    order = np.lexsort((ov.pair_pred, -ov.iou, ov.pair_gt))
    g_sorted = ov.pair_gt[order]
    first = order[np.unique(g_sorted, return_index=True)[1]]  # best pair of each overlapped GT
    inter = int(ov.inter[first].sum())
    union = int(
        (ov.gt_area[ov.pair_gt[first]] + ov.pred_area[ov.pair_pred[first]] - ov.inter[first]).sum()
    )
    unmatched_gt = np.ones(ov.n_gt, bool)
    unmatched_gt[ov.pair_gt[first]] = False
    used = np.zeros(ov.n_pred, bool)
    used[ov.pair_pred[first]] = True
    union += int(ov.gt_area[unmatched_gt].sum()) + int(ov.pred_area[~used].sum())
    return inter / union if union else 0.0


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Foreground Dice ``2|G ∩ P| / (|G| + |P|)`` of the two label images (1.0 if both empty)."""
    gt, pred = _check(gt, pred)
    g, p = gt != 0, pred != 0
    total = int(g.sum()) + int(p.sum())
    return 2.0 * int((g & p).sum()) / total if total else 1.0


def iou_dsb(gt: np.ndarray, pred: np.ndarray) -> float:
    """The 2018 Data Science Bowl score: mean over t in 0.5:0.05:0.95 of TP / (TP + FP + FN)."""
    return _dsb_from(overlaps(gt, pred))


def _dsb_from(ov: Overlaps) -> float:
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    tp = (ov.iou[None, :] > DSB_THRESHOLDS[:, None]).sum(axis=1)
    return float(np.mean(tp / (ov.n_gt + ov.n_pred - tp)))


def _instance_types(
    labels: np.ndarray, ids: np.ndarray, types: Mapping[int, int] | np.ndarray | Sequence[int]
) -> np.ndarray:
    """Type of every instance in ``ids``.

    ``types`` is a mapping label -> type, a 1-D array where ``types[i]`` is the type of label
    ``i + 1`` (the :class:`~nucscale.infer.Segmentation` convention), or a type map of the
    image's shape (each instance takes its most frequent type value).
    """
    if isinstance(types, Mapping):
        try:
            return np.array([int(types[int(i)]) for i in ids], np.int64)
        except KeyError as exc:
            raise ValueError(f"no type given for instance label {exc.args[0]}") from None
    arr = np.asarray(types)
    if arr.shape == labels.shape:
        ids_all, inv = np.unique(labels.ravel(), return_inverse=True)
        tvals, tinv = np.unique(arr.ravel(), return_inverse=True)
        counts = np.zeros((ids_all.size, tvals.size), np.int64)
        np.add.at(counts, (inv, tinv), 1)
        best = tvals[counts.argmax(axis=1)]
        return best[np.searchsorted(ids_all, ids)].astype(np.int64)
    if arr.ndim == 1:
        if ids.size and (ids.min() < 1 or ids.max() > arr.size):
            raise ValueError(f"types has {arr.size} entries but labels go up to {ids.max()}")
        return arr[ids - 1].astype(np.int64)
    raise ValueError(f"types must be a mapping, a 1-D array or a {labels.shape} type map")


def multiclass_pq(
    gt: np.ndarray,
    gt_types: Mapping[int, int] | np.ndarray | Sequence[int],
    pred: np.ndarray,
    pred_types: Mapping[int, int] | np.ndarray | Sequence[int],
    classes: Sequence[int],
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Multi-class PQ: PQ of each class over the instances of that class, then averaged.

    Parameters
    ----------
    gt, pred:
        Instance label images.
    gt_types, pred_types:
        Instance types (see ``_instance_types``: mapping, 1-D array or type map).
    classes:
        Class ids to score.

    Returns
    -------
    dict
        ``mpq``: mean PQ over the classes present in the GT or the prediction (a class absent
        from both would score 1.0 and is left out of the mean; ``nan`` when none is present);
        ``per_class``: class -> the :func:`panoptic_quality` dict of that class.
    """
    _check_threshold(iou_threshold)
    ov = overlaps(gt, pred)
    tg = _instance_types(np.asarray(gt), ov.gt_ids, gt_types)
    tp_ = _instance_types(np.asarray(pred), ov.pred_ids, pred_types)
    per_class: dict[int, dict[str, Any]] = {}
    present: list[float] = []
    for c in classes:  # loop over classes only; the pairs are filtered vectorised
        kg, kp = tg == c, tp_ == c
        per_class[int(c)] = _pq_from(ov, kg, kp, iou_threshold)
        if kg.any() or kp.any():
            present.append(per_class[int(c)]["pq"])
    mpq = float(np.mean(present)) if present else float("nan")
    return {"mpq": mpq, "per_class": per_class}


def evaluate(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> dict[str, Any]:
    """All single-class metrics of a prediction against its ground truth, in one dict.

    Keys: ``pq``, ``dq``, ``sq``, ``tp``, ``fp``, ``fn``, ``aji``, ``dice``, ``iou_dsb``,
    ``n_gt``, ``n_pred``.
    """
    _check_threshold(iou_threshold)
    ov = overlaps(gt, pred)
    out = _pq_from(ov, np.ones(ov.n_gt, bool), np.ones(ov.n_pred, bool), iou_threshold)
    out["aji"] = _aji_from(ov)
    out["dice"] = dice(gt, pred)
    out["iou_dsb"] = _dsb_from(ov)
    out["n_gt"], out["n_pred"] = ov.n_gt, ov.n_pred
    return out
