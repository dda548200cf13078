"""Two runs of the same slide, compared: are they the same nuclei?

Used to prove tiled = whole-image processing (benchmarks/exactness.py, tests/pipeline/
test_exactness.py): nucleus ids encode the owning tile, so two tile sizes give different ids
for the same nuclei; what must agree is the partition of the pixels into nuclei and the
measured features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nucscale.analysis._metrics import panoptic_quality
from nucscale.store import nuclei_path, open_labels, read_nuclei

#: Columns that name the owning tile; they differ between tile sizes by design.
TILE_COLUMNS = ("nucleus_id", "tile_row", "tile_col")


def to_image_grid(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels at the analysis pixel size mapped onto an image's own pixel grid of ``shape``:
    each image pixel takes the label of the analysis pixel that covers its centre. For scoring
    a run of an image analysed at another pixel size against ground truth at its own."""
    fy, fx = shape[0] / labels.shape[0], shape[1] / labels.shape[1]
    iy = np.minimum(((np.arange(shape[0]) + 0.5) / fy).astype(np.int64), labels.shape[0] - 1)
    ix = np.minimum(((np.arange(shape[1]) + 0.5) / fx).astype(np.int64), labels.shape[1] - 1)
    return labels[np.ix_(iy, ix)]


def read_run(out: str | Path, slide_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label image and feature columns (rows sorted by centroid y, x) of one slide's output."""
    root = Path(out)
    labels = np.asarray(open_labels(root, slide_id)[:])
    table = read_nuclei(nuclei_path(root, slide_id))
    order = np.lexsort((table.column("centroid_x"), table.column("centroid_y")))
    cols = {
        name: np.asarray(table.column(name).to_numpy(zero_copy_only=False))[order]
        for name in table.column_names
        if name not in TILE_COLUMNS
    }
    return labels, cols


def compare_runs(
    a: tuple[np.ndarray, dict[str, np.ndarray]], b: tuple[np.ndarray, dict[str, np.ndarray]]
) -> dict[str, Any]:
    """How far run ``b`` is from run ``a`` (each as returned by :func:`read_run`).

    Returns
    -------
    dict
        ``nuclei_a``, ``nuclei_b``, ``count_diff_pct`` (relative to ``a``), ``pq`` (matched
        at IoU 0.5), ``same_partition`` (the same pixel sets, up to ids), ``same_features``
        (every feature column equal, row for row) and ``differing_columns``.
    """
    la, lb = a[0], b[0]
    if la.shape != lb.shape:
        raise ValueError(f"label images differ in shape: {la.shape} vs {lb.shape}")
    fg = la > 0
    na, nb = len(np.unique(la[fg])), len(np.unique(lb[lb > 0]))
    same = bool(np.array_equal(fg, lb > 0))
    if same and na:
        pairs = np.unique(np.stack([la[fg], lb[fg]]), axis=1).shape[1]
        same = pairs == na == nb  # a bijection between the two label sets
    differing = sorted(
        k
        for k in a[1]
        if k not in b[1] or len(a[1][k]) != len(b[1][k]) or not np.array_equal(a[1][k], b[1][k])
    )
    return {
        "nuclei_a": na,
        "nuclei_b": nb,
        "count_diff_pct": 100.0 * abs(nb - na) / max(na, 1),
        "pq": float(panoptic_quality(la, lb)["pq"]) if na or nb else 1.0,
        "same_partition": same,
        "same_features": not differing,
        "differing_columns": differing,
    }
