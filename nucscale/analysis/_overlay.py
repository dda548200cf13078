"""QC picture of a prediction against its ground truth: coloured instance outlines on the image.

Colours (matching at IoU > 0.5, as for PQ):

- yellow: a predicted instance matched to a GT instance (true positive),
- green: a predicted instance with no match (false positive),
- red: a GT instance with no match (false negative).

Matched GT outlines are not drawn (their prediction's yellow outline stands for the pair).
Outlines are the instances' inner boundaries (``skimage.segmentation.find_boundaries``), so
touching instances keep separate outlines; prediction outlines are drawn over GT outlines.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from nucscale.analysis._metrics import match_instances

YELLOW = (255, 255, 0)
GREEN = (0, 255, 0)
RED = (255, 0, 0)


def overlay(
    image_rgb: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """RGB uint8 copy of ``image_rgb`` with TP (yellow), FP (green) and FN (red) outlines.

    Parameters
    ----------
    image_rgb:
        (h, w, 3) or (h, w) image (uint8, or any numeric type, which is scaled to 0..255); ``None``
        draws on black.
    gt, pred:
        (h, w) instance label images.

    Raises
    ------
    ValueError
        The shapes of the image and the label images differ.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape} vs prediction {pred.shape}")
    out = _as_rgb8(image_rgb, gt.shape)
    matched_gt, matched_pred, _ = match_instances(gt, pred, iou_threshold)
    fn = (gt != 0) & ~np.isin(gt, matched_gt)
    tp = np.isin(pred, matched_pred) & (pred != 0)
    fp = (pred != 0) & ~tp
    gt_edges = find_boundaries(gt, mode="inner")
    pred_edges = find_boundaries(pred, mode="inner")
    out[gt_edges & fn] = RED
    out[pred_edges & fp] = GREEN
    out[pred_edges & tp] = YELLOW
    return out


def _as_rgb8(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if image is None:
        return np.zeros((*shape, 3), np.uint8)
    img = np.asarray(image)
    if img.shape[:2] != shape:
        raise ValueError(f"shape mismatch: image {img.shape[:2]} vs labels {shape}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (h, w), (h, w, 3) or (h, w, 4), got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        img = np.zeros(f.shape, np.uint8) if hi <= lo else ((f - lo) / (hi - lo) * 255).round()
    return np.array(img, dtype=np.uint8, copy=True, order="C")  # never draw on the input
