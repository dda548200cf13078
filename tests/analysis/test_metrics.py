"""Metrics: hand-computed cases, a brute-force reference on random labels, real DSB labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from nucscale.analysis import (
    aggregated_jaccard_index,
    dice,
    evaluate,
    iou_dsb,
    match_instances,
    multiclass_pq,
    panoptic_quality,
)

# --- hand-computed cases -------------------------------------------------------------------


def _block() -> np.ndarray:
    """One 10x10 object (area 100) in a 12x12 image."""
    a = np.zeros((12, 12), np.int32)
    a[1:11, 1:11] = 1
    return a


def _split() -> np.ndarray:
    """The block cut into a 10x6 (area 60) and a 10x4 (area 40) part."""
    a = np.zeros((12, 12), np.int32)
    a[1:11, 1:7] = 1
    a[1:11, 7:11] = 2
    return a


def test_identity_scores_one() -> None:
    gt = _split()
    m = evaluate(gt, gt)
    assert m["pq"] == m["dq"] == m["sq"] == m["aji"] == m["dice"] == m["iou_dsb"] == 1.0
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 0)


def test_a_split_prediction() -> None:
    # GT one object; prediction splits it 60/40: IoU 0.6 -> TP, 0.4 -> FP
    m = evaluate(_block(), _split())
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)
    assert m["dq"] == pytest.approx(2 / 3)
    assert m["sq"] == pytest.approx(0.6)
    assert m["pq"] == pytest.approx(0.4)
    # AJI: C = 60, U = 100 + unused prediction of area 40
    assert m["aji"] == pytest.approx(60 / 140)
    assert m["dice"] == 1.0
    # DSB: TP/(TP+FP+FN) = 1/2 at t = 0.5, 0.55; 0 from t = 0.6 on (IoU 0.6 is not > 0.6)
    assert m["iou_dsb"] == pytest.approx(0.1)


def test_a_merged_prediction() -> None:
    # GT two objects (60, 40); prediction merges them: IoU 0.6 -> TP, the 40 one is missed
    m = evaluate(_split(), _block())
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)
    assert m["pq"] == pytest.approx(0.4)
    # AJI: both GT pick the merged prediction: C = 60 + 40, U = 100 + 100
    assert m["aji"] == pytest.approx(0.5)
    assert m["iou_dsb"] == pytest.approx(0.1)


def test_a_shifted_and_a_missed_and_an_extra_object() -> None:
    gt = np.zeros((20, 20), np.int32)
    gt[0:4, 0:4] = 1  # 16 px, predicted shifted by one column: IoU 12/20
    gt[10:14, 10:14] = 2  # missed
    pred = np.zeros_like(gt)
    pred[0:4, 1:5] = 5
    pred[16:18, 0:2] = 9  # extra (4 px)
    m = evaluate(gt, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["sq"] == pytest.approx(0.6)
    assert m["pq"] == pytest.approx(0.6 * 1 / 2)
    assert m["aji"] == pytest.approx(12 / (20 + 16 + 4))
    assert m["dice"] == pytest.approx(2 * 12 / (32 + 20))


def test_empty_images() -> None:
    empty = np.zeros((8, 8), np.int32)
    one = empty.copy()
    one[2:5, 2:5] = 3
    both = evaluate(empty, empty)
    assert both["pq"] == both["dq"] == both["sq"] == both["aji"] == both["dice"] == 1.0
    assert both["iou_dsb"] == 1.0
    for gt, pred in ((one, empty), (empty, one)):
        m = evaluate(gt, pred)
        assert m["pq"] == m["aji"] == m["dice"] == m["iou_dsb"] == 0.0
    assert panoptic_quality(one, empty)["fn"] == 1
    assert panoptic_quality(empty, one)["fp"] == 1


def test_labels_need_not_be_consecutive_and_background_may_be_absent() -> None:
    gt, pred = _split(), _block()
    gt2 = np.where(gt == 1, 70000, np.where(gt == 2, 3, 0))
    pred2 = np.where(pred == 1, 12, 0)
    assert evaluate(gt2, pred2) == evaluate(gt, pred)
    full = np.ones((4, 4), np.int32)  # no background pixel at all
    assert panoptic_quality(full, full * 7)["pq"] == 1.0


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="integers"):
        dice(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="iou_threshold"):
        panoptic_quality(_block(), _block(), iou_threshold=0.3)


def test_multiclass_pq() -> None:
    gt = np.zeros((20, 20), np.int32)
    gt[0:4, 0:4] = 1  # class 1
    gt[10:14, 10:14] = 2  # class 2
    pred = gt.copy()
    # same instances; prediction gets the type of the second one wrong
    m = multiclass_pq(gt, {1: 1, 2: 2}, pred, np.array([1, 1]), classes=[1, 2, 3])
    c1, c2 = m["per_class"][1], m["per_class"][2]
    assert (c1["tp"], c1["fp"], c1["fn"]) == (1, 1, 0)
    assert c1["pq"] == pytest.approx(2 / 3)
    assert (c2["tp"], c2["fp"], c2["fn"]) == (0, 0, 1)
    assert c2["pq"] == 0.0
    assert m["per_class"][3]["pq"] == 1.0  # absent from both: perfect, but not averaged
    assert m["mpq"] == pytest.approx(1 / 3)
    # a type map gives the same answer as the per-instance types
    type_map = np.where(gt > 0, 1, 0)
    assert multiclass_pq(gt, {1: 1, 2: 2}, pred, type_map, classes=[1, 2, 3]) == m


# --- brute-force reference -----------------------------------------------------------------


def _ref(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pair-by-pair loops straight from the papers' definitions."""
    gids = [int(i) for i in np.unique(gt) if i]
    pids = [int(i) for i in np.unique(pred) if i]
    iou = np.zeros((len(gids), len(pids)))
    inter = np.zeros_like(iou)
    union = np.zeros_like(iou)
    for a, g in enumerate(gids):
        for b, p in enumerate(pids):
            i = np.logical_and(gt == g, pred == p).sum()
            u = np.logical_or(gt == g, pred == p).sum()
            inter[a, b], union[a, b], iou[a, b] = i, u, i / u
    out: dict[str, float] = {}
    if not gids and not pids:
        return {"pq": 1.0, "aji": 1.0, "iou_dsb": 1.0}
    # PQ: matched pairs are those above 0.5
    tp = int((iou > 0.5).sum())
    fp, fn = len(pids) - tp, len(gids) - tp
    sq = iou[iou > 0.5].mean() if tp else 0.0
    out["pq"] = sq * tp / (tp + 0.5 * fp + 0.5 * fn)
    # AJI (Kumar et al. 2017, Algorithm 1)
    c = u = 0.0
    used: set[int] = set()
    for a, g in enumerate(gids):
        if pids and iou[a].max() > 0:
            b = int(np.argmax(iou[a]))
            c += inter[a, b]
            u += union[a, b]
            used.add(b)
        else:
            u += (gt == g).sum()
    for b, p in enumerate(pids):
        if b not in used:
            u += (pred == p).sum()
    out["aji"] = c / u
    scores = []
    for t in np.arange(0.5, 1.0, 0.05):
        t = round(t, 2)
        tp_t = int((iou > t).sum())
        scores.append(tp_t / (len(gids) + len(pids) - tp_t))
    out["iou_dsb"] = float(np.mean(scores))
    return out


def _random_labels(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Random overlapping rectangles painted in turn, labels non-consecutive."""
    lab = np.zeros(shape, np.int32)
    ids = rng.choice(np.arange(1, 1000), size=n, replace=False)
    for i in ids:
        y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        h, w = rng.integers(3, 10, size=2)
        lab[y : y + h, x : x + w] = i
    return lab


@pytest.mark.parametrize("seed", range(25))
def test_against_brute_force_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, (32, 32), int(rng.integers(0, 8)))
    # prediction: a perturbed copy (shifted, some relabelled, extras) or independent
    if seed % 2:
        pred = np.roll(gt, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2))) * 3
        pred[_random_labels(rng, (32, 32), 2) > 0] = 0
    else:
        pred = _random_labels(rng, (32, 32), int(rng.integers(0, 8)))
    ref = _ref(gt, pred)
    m = evaluate(gt, pred)
    for k, v in ref.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k


@pytest.mark.parametrize("seed", range(10))
def test_symmetry(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a = _random_labels(rng, (40, 40), 8)
    b = _random_labels(rng, (40, 40), 8)
    ab, ba = panoptic_quality(a, b), panoptic_quality(b, a)
    assert ab["pq"] == pytest.approx(ba["pq"])
    assert (ab["tp"], ab["fp"], ab["fn"]) == (ba["tp"], ba["fn"], ba["fp"])
    assert dice(a, b) == pytest.approx(dice(b, a))
    assert iou_dsb(a, b) == pytest.approx(iou_dsb(b, a))
    g, p, _ = match_instances(a, b)
    g2, p2, _ = match_instances(b, a)
    assert sorted(zip(g, p, strict=True)) == sorted(zip(p2, g2, strict=True))
    assert 0.0 <= aggregated_jaccard_index(a, b) <= 1.0


# --- real DSB 2018 ground truth ------------------------------------------------------------


def test_on_real_dsb_labels(dsb2018: Path) -> None:
    gt = np.asarray(Image.open(dsb2018 / "0999dab07b11_labels.png"))
    assert evaluate(gt, gt)["pq"] == 1.0
    eroded = gt.copy()
    eroded[find_boundaries(gt, mode="inner")] = 0  # every nucleus loses its outline
    m = evaluate(gt, eroded)
    assert m["dq"] == 1.0  # each nucleus still overlaps its own shrunk copy at IoU > 0.5
    assert m["tp"] == m["n_gt"] == 59
    assert m["sq"] < 1.0
    assert m["pq"] < 1.0
    assert m["pq"] == pytest.approx(m["sq"])
    assert 0.5 < m["aji"] < 1.0
    assert m["dice"] < 1.0
