"""Synthetic blood smears (generated, not real data) for the red-cell shape experiment:
images with known cells and classes, and the match of segmented cells to them."""

from nucscale.smear._generate import CLASSES, Smear, SmearSpec, generate_smear
from nucscale.smear._match import matched_classes, segmentation_scores
from nucscale.smear._write import write_smears

__all__ = [
    "CLASSES",
    "Smear",
    "SmearSpec",
    "generate_smear",
    "matched_classes",
    "segmentation_scores",
    "write_smears",
]
