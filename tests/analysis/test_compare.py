"""compare_runs: same nuclei up to ids, or not; labels mapped onto an image's own grid."""

from __future__ import annotations

import numpy as np
import pytest

from nucscale.analysis import compare_runs, to_image_grid


def _run(labels: np.ndarray, area: list[float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return labels, {"area": np.asarray(area)}


def test_same_nuclei_with_other_ids() -> None:
    a = np.zeros((20, 20), np.int64)
    a[2:6, 2:6], a[10:15, 10:14] = 7, 9
    b = np.where(a == 7, 1 << 20 | 1, np.where(a == 9, 2 << 20 | 1, 0))
    diff = compare_runs(_run(a, [16, 20]), _run(b, [16, 20]))
    assert diff["same_partition"] and diff["same_features"]
    assert (diff["nuclei_a"], diff["nuclei_b"], diff["pq"], diff["count_diff_pct"]) == (
        2,
        2,
        1.0,
        0.0,
    )


def test_a_merge_a_loss_and_a_feature_change_are_seen() -> None:
    a = np.zeros((20, 20), np.int64)
    a[2:6, 2:6], a[2:6, 6:10], a[12:16, 12:16] = 1, 2, 3
    merged = np.where(a == 2, 1, a)  # 1 and 2 merged: same foreground, other partition
    diff = compare_runs(_run(a, [16, 16, 16]), _run(merged, [32, 16]))
    assert not diff["same_partition"]
    assert diff["differing_columns"] == ["area"]
    lost = np.where(a == 3, 0, a)
    diff = compare_runs(_run(a, [16, 16, 16]), _run(lost, [16, 16]))
    assert not diff["same_partition"]
    assert diff["count_diff_pct"] == pytest.approx(100 / 3)
    assert diff["pq"] == pytest.approx(0.8)  # 2 TP, 1 FN, IoU 1: 2 / (2 + 0.5)
    with pytest.raises(ValueError, match="shape"):
        compare_runs(_run(a, []), _run(a[:10], []))


def test_to_image_grid_maps_analysis_labels_onto_the_image() -> None:
    labels = np.array([[1, 2], [3, 0]], np.int32)  # analysis px = 2x2 image px
    grid = to_image_grid(labels, (4, 4))
    np.testing.assert_array_equal(grid, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]])
    # and finer analysis pixels: each image pixel takes the one covering its centre
    np.testing.assert_array_equal(to_image_grid(grid, (2, 2)), labels)
