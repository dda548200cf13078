"""Cell classes for segmented cells, from the generated truth: the labels the shape classifier
is trained and scored on (``slide_id, nucleus_id, label``, the format of
``nucscale classify train --labels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nucscale.analysis._metrics import match_instances, panoptic_quality
from nucscale.smear._write import truth_labels
from nucscale.store import open_labels


def _segmented(out: Path, image: str) -> np.ndarray:
    labels = np.asarray(open_labels(out, image)[:])
    return labels.reshape(labels.shape[-2:])


def segmentation_scores(out: Path, folder: Path) -> pd.DataFrame:
    """PQ, DQ, SQ and counts of each image's segmentation against its truth."""
    cells = pd.read_parquet(folder / "cells.parquet")
    rows = []
    for image in sorted(cells["image"].unique()):
        pq = panoptic_quality(np.asarray(truth_labels(folder, image)), _segmented(out, image))
        rows.append({"image": image, **pq})
    return pd.DataFrame(rows)


def matched_classes(out: Path, folder: Path, min_iou: float = 0.5) -> pd.DataFrame:
    """``slide_id, nucleus_id, label``: each segmented cell matched one to one (IoU above
    ``min_iou``) to a generated cell, with that cell's class. Cells cut by the image's edge
    (their shape is not theirs) and segmented objects with no match (merged or split cells,
    fragments) get no label."""
    cells = pd.read_parquet(folder / "cells.parquet")
    rows = []
    for image, group in cells.groupby("image", sort=True):
        truth = np.asarray(truth_labels(folder, str(image)))
        gt, pred, _ = match_instances(truth, _segmented(out, str(image)), min_iou)
        by_label = group.set_index("label")
        for g, p in zip(gt.tolist(), pred.tolist(), strict=True):
            cell = by_label.loc[g]
            if not bool(cell["touches_border"]):
                rows.append({"slide_id": image, "nucleus_id": int(p), "label": cell["cell_class"]})
    return pd.DataFrame(rows, columns=["slide_id", "nucleus_id", "label"])
