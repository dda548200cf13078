"""Real nuclei for the measurement families: the DSB 2018 H&E images with ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2hed


@pytest.fixture(scope="module")
def he_nuclei(dsb2018: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, haematoxylin OD, ids) of the 8 H&E images with ground truth."""
    index = json.loads((dsb2018 / "index.json").read_text())
    out = []
    for entry in index:
        if entry["modality"] != "brightfield_he":
            continue
        prefix = entry["file_prefix"]
        labels = np.asarray(Image.open(dsb2018 / f"{prefix}_labels.png")).astype(np.int64)
        rgb = np.asarray(Image.open(dsb2018 / f"{prefix}_image.png").convert("RGB"))
        out.append((labels, rgb2hed(rgb)[..., 0], np.unique(labels[labels > 0])))
    assert len(out) == 8
    return out
