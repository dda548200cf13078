"""CellProfiler-style families checked one nucleus at a time against references (numpy,
scikit-image, mahotas: CellProfiler's own texture implementation) on real DSB 2018 H&E nuclei."""

from __future__ import annotations

import mahotas
import numpy as np
import pytest
from skimage.draw import disk
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from nucscale.features._cellprofiler import (
    intensity_family,
    neighbours,
    shape_family,
    texture_family,
)
from nucscale.features._texture import DIRECTIONS, HARALICK, quantize

LEVELS, LOW, HIGH = 8, 0.0, 0.25


def test_intensity_equals_per_nucleus_numpy(he_nuclei: list) -> None:
    for labels, signal, ids in he_nuclei:
        got = intensity_family(signal, labels, ids, mpp=0.5)
        for row, i in enumerate(ids):
            mask = labels == i
            v = signal[mask]
            rr, cc = np.nonzero(mask)
            w = signal[rr, cc]
            disp = np.hypot((rr * w).sum() / w.sum() - rr.mean(), (cc * w).sum() / w.sum()
                            - cc.mean()) * 0.5  # fmt: skip
            edge = find_boundaries(mask, mode="inner", connectivity=1) & mask
            want = {
                "integrated_intensity": v.sum(), "mean_intensity": v.mean(),
                "std_intensity": v.std(), "min_intensity": v.min(), "max_intensity": v.max(),
                "median_intensity": np.median(v),
                "lower_quartile_intensity": np.percentile(v, 25),
                "upper_quartile_intensity": np.percentile(v, 75),
                "mass_displacement": disp,
                "integrated_intensity_edge": signal[edge].sum(),
                "mean_intensity_edge": signal[edge].mean(),
            }  # fmt: skip
            for name, value in want.items():
                assert got[name][row] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, i)


def test_texture_equals_mahotas_as_cellprofiler_calls_it(he_nuclei: list) -> None:
    compared = 0
    for labels, signal, ids in he_nuclei[:4]:
        got = texture_family(signal, labels, ids, low=LOW, high=HIGH, levels=LEVELS)
        grey = quantize(signal, LOW, HIGH, LEVELS)
        for row, i in enumerate(ids):
            mask = labels == i
            image = np.where(mask, grey, 0).astype(np.uint8)
            try:  # CellProfiler: mahotas.features.haralick(pixels, ignore_zeros=True)
                want = mahotas.features.haralick(image, ignore_zeros=True, distance=1).mean(0)
            except ValueError:  # a direction without a pixel pair (one pixel wide)
                continue
            mine = [got[f"texture_{n}"][row] for n in HARALICK]
            np.testing.assert_allclose(mine, want, rtol=1e-9, atol=1e-12)
            compared += 1
    assert compared > 200


def test_texture_of_a_nucleus_without_pairs_in_a_direction() -> None:
    labels = np.zeros((5, 5), np.int64)
    labels[2, 1:4] = 1  # one row: pairs only along 0°
    signal = np.array([[0.0] * 5] * 2 + [[0, 0.05, 0.1, 0.2, 0]] + [[0.0] * 5] * 2)
    got = texture_family(signal, labels, np.array([1]), low=LOW, high=HIGH, levels=LEVELS)
    # levels 2, 4, 7 side by side: only the 0° direction has pairs, (2,4) and (4,7) both ways,
    # so the contrast is (2 * 2**2 + 2 * 3**2) / 4
    assert DIRECTIONS[0] == (0, 1)
    assert list(quantize(signal, LOW, HIGH, LEVELS)[2, 1:4]) == [2, 4, 7]
    assert got["texture_contrast"][0] == pytest.approx(6.5)
    assert not np.isnan(got["texture_entropy"][0])


def test_shape_form_factor_and_compactness(he_nuclei: list) -> None:
    labels, _, ids = he_nuclei[0]
    props = {p.label: p for p in regionprops(labels)}
    area = np.array([props[i].area for i in ids], float)
    perimeter = np.array([props[i].perimeter for i in ids], float)
    got = shape_family(labels, ids, area, perimeter, mpp=1.0)
    np.testing.assert_allclose(got["form_factor"], 4 * np.pi * area / perimeter**2)
    for row, i in enumerate(ids):
        rr, cc = np.nonzero(labels == i)
        r2 = ((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2).mean()
        assert got["compactness"][row] == pytest.approx(2 * np.pi * r2 / rr.size)
    disc = np.zeros((101, 101), np.int64)
    disc[disk((50, 50), 40)] = 1
    p = regionprops(disc)[0]
    one = shape_family(disc, np.array([1]), np.array([p.area]), np.array([p.perimeter]), mpp=1.0)
    assert one["compactness"][0] == pytest.approx(1.0, abs=0.01)
    assert one["form_factor"][0] == pytest.approx(1.0, abs=0.1)


def test_neighbours_equal_brute_force() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 200, 400), rng.uniform(0, 200, 400)
    got = neighbours(x, y, radius_um=15.0)
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(got["neighbours"], (d <= 15.0).sum(axis=1))
    np.testing.assert_allclose(got["nearest_neighbour_distance"], d.min(axis=1))
    alone = neighbours(np.array([1.0]), np.array([2.0]), radius_um=15.0)
    assert alone["neighbours"][0] == 0 and np.isnan(alone["nearest_neighbour_distance"][0])
