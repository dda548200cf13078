"""Segmenters: the interface, the weights-free baseline, and the per-process registry."""

from nucscale.infer._baseline import BaselineSegmenter
from nucscale.infer._registry import SEGMENTERS, get_segmenter
from nucscale.infer._segmenter import Calibration, Segmentation, Segmenter

__all__ = [
    "SEGMENTERS",
    "BaselineSegmenter",
    "Calibration",
    "Segmentation",
    "Segmenter",
    "get_segmenter",
]
