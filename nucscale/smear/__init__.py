"""Synthetic blood smears (generated, not real data) for the red-cell shape experiment:
images with known cells and classes, and the match of segmented cells to them."""

from nucscale.smear._generate import CLASSES, Smear, SmearSpec, generate_smear

__all__ = ["CLASSES", "Smear", "SmearSpec", "generate_smear"]
