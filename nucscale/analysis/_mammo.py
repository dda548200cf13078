"""Scores of mammogram mass masks against an index's summed truth masks: Dice and IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks (1.0 each when both are empty)."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    inter, total, union = (p & t).sum(), p.sum() + t.sum(), (p | t).sum()
    if union == 0:
        return 1.0, 1.0
    return float(2 * inter / total), float(inter / union)


def score_results(out: Path, index: pd.DataFrame) -> list[dict[str, Any]]:
    """Per full mammogram of ``index`` with a truth label and a mask in ``out``: Dice and IoU
    on the mammogram's own pixels."""
    from nucscale.store import level0
    from nucscale.store._mammograms import mammogram_id
    from nucscale.store._omezarr import labels_path

    rows = []
    fulls = index[(index["role"] == "full") & index["label_path"].notna()]
    for _, full in fulls.iterrows():
        mid = mammogram_id(full["sop_instance_uid"])
        path = labels_path(out, mid)
        if not path.exists():
            continue
        pred = np.asarray(level0(path)[:])
        truth = np.asarray(Image.open(full["label_path"])) > 0
        dice, iou = dice_iou(pred, truth)
        rows.append({"mammogram_id": mid, "path": full["path"], "dice": dice, "iou": iou})
    return rows
