"""Evaluation of instance segmentations: metrics (PQ, mPQ, AJI, Dice, DSB score), overlays, and
plausibility (QC) checks of a slide's nuclei."""

from nucscale.analysis._compare import compare_runs, read_run, to_image_grid
from nucscale.analysis._metrics import (
    DSB_THRESHOLDS,
    Overlaps,
    aggregated_jaccard_index,
    dice,
    evaluate,
    iou_dsb,
    match_instances,
    multiclass_pq,
    overlaps,
    panoptic_quality,
)
from nucscale.analysis._overlay import overlay
from nucscale.analysis._qc import qc_flags, qc_measures

__all__ = [
    "DSB_THRESHOLDS",
    "Overlaps",
    "aggregated_jaccard_index",
    "compare_runs",
    "dice",
    "evaluate",
    "iou_dsb",
    "match_instances",
    "multiclass_pq",
    "overlaps",
    "overlay",
    "panoptic_quality",
    "qc_flags",
    "qc_measures",
    "read_run",
    "to_image_grid",
]
