"""Segmenters: the interface, the weights-free baseline, and the per-process registry."""

from nucscale.contracts import Calibration, Segmentation, Segmenter
from nucscale.infer._baseline import BaselineSegmenter
from nucscale.infer._registry import SEGMENTERS, get_segmenter

__all__ = [
    "SEGMENTERS",
    "BaselineSegmenter",
    "Calibration",
    "Segmentation",
    "Segmenter",
    "get_segmenter",
]
