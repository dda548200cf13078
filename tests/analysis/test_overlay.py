"""QC overlay colours on a constructed case: one TP, one FN, one FP."""

from __future__ import annotations

import numpy as np
import pytest

from nucscale.analysis import overlay
from nucscale.analysis._overlay import GREEN, RED, YELLOW


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.full((30, 30, 3), 50, np.uint8)
    gt = np.zeros((30, 30), np.int32)
    gt[2:8, 2:8] = 1  # matched by pred 4
    gt[15:21, 15:21] = 2  # missed
    pred = np.zeros_like(gt)
    pred[2:8, 2:8] = 4
    pred[22:27, 2:7] = 9  # extra
    return img, gt, pred


def test_colours_of_tp_fp_fn() -> None:
    img, gt, pred = _case()
    out = overlay(img, gt, pred)
    assert out.dtype == np.uint8 and out.shape == (30, 30, 3)
    assert tuple(out[2, 2]) == YELLOW  # corner of the matched prediction's outline
    assert tuple(out[7, 5]) == YELLOW
    assert tuple(out[15, 18]) == RED  # outline of the missed GT nucleus
    assert tuple(out[20, 20]) == RED
    assert tuple(out[22, 4]) == GREEN  # outline of the extra prediction
    assert tuple(out[26, 6]) == GREEN
    # interiors and background keep the image
    for y, x in ((4, 4), (18, 18), (24, 4), (12, 12), (0, 0)):
        assert tuple(out[y, x]) == (50, 50, 50)
    # exactly the outline pixels are coloured: 20 per 6x6 square, 16 for the 5x5 one
    coloured = (out != 50).any(axis=2)
    assert coloured.sum() == 20 + 20 + 16
    assert tuple(img[2, 2]) == (50, 50, 50)  # input untouched


def test_grey_and_missing_image() -> None:
    _, gt, pred = _case()
    grey = np.linspace(0, 1000, 900).reshape(30, 30)  # float, scaled to 0..255
    out = overlay(grey, gt, pred)
    assert out[0, 0].tolist() == [0, 0, 0] and out[29, 29].tolist() == [255, 255, 255]
    black = overlay(None, gt, pred)
    assert tuple(black[2, 2]) == YELLOW and tuple(black[12, 12]) == (0, 0, 0)
    with pytest.raises(ValueError, match="shape mismatch"):
        overlay(np.zeros((5, 5, 3), np.uint8), gt, pred)
