"""Plausibility measures and flags of a slide's nuclei."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from nucscale.analysis import qc_flags, qc_measures
from nucscale.analysis._qc import qc_counts, qc_fractions


def _table(area: list[float], rgb: list[float], h: list[float], e: list[float]) -> pa.Table:
    return pa.table(
        {
            "area": np.array(area),
            "mean_r": np.array(rgb, np.float32),
            "mean_g": np.array(rgb, np.float32),
            "mean_b": np.array(rgb, np.float32),
            "od_haematoxylin": np.array(h, np.float32),
            "od_eosin": np.array(e, np.float32),
        }
    )


def test_measures_count_small_glass_and_eosin_objects() -> None:
    t = _table(
        area=[5.0, 30.0, 40.0, 50.0],
        rgb=[120.0, 230.0, 120.0, 100.0],
        h=[0.5, 0.1, 0.05, 0.6],
        e=[0.2, 0.05, 0.3, 0.2],
    )
    m = qc_measures(t, "brightfield")
    assert m == {"small_frac": 0.25, "eosin_frac": 0.25, "glass_frac": 0.25}
    # fluorescence: no stain or glass measures
    assert qc_measures(t, "fluorescence") == {"small_frac": 0.25}
    assert qc_measures(t.slice(0, 0), "brightfield") == {}


def test_counts_of_parts_add_up_to_the_whole() -> None:
    """Red cells are left out of the stain measures; counts of slices add up, so a slide's
    fractions can be gathered one fragment at a time."""
    t = _table(
        area=[5.0, 30.0, 40.0, 50.0, 8.0],
        rgb=[120.0, 230.0, 120.0, 100.0, 240.0],
        h=[0.5, 0.1, 0.05, 0.6, 0.1],
        e=[0.2, 0.05, 0.3, 0.2, 0.4],
    ).append_column("type_name", pa.array(["nucleus"] * 4 + ["red cell"]).dictionary_encode())
    whole = qc_counts(t, "brightfield")
    assert whole == {"small_frac": (2, 5), "eosin_frac": (1, 4), "glass_frac": (1, 4)}
    parts = [qc_counts(t.slice(0, 2), "brightfield"), qc_counts(t.slice(2), "brightfield")]
    summed = {k: (parts[0][k][0] + parts[1][k][0], parts[0][k][1] + parts[1][k][1]) for k in whole}
    assert summed == whole
    assert qc_fractions(whole) == qc_measures(t, "brightfield") == {
        "small_frac": 0.4, "eosin_frac": 0.25, "glass_frac": 0.25}  # fmt: skip
    # only red cells: no stain measures at all
    assert qc_counts(t.slice(4), "brightfield") == {"small_frac": (1, 1)}


def test_flags_name_each_measure_past_its_limit() -> None:
    ok = {"small_frac": 0.02, "eosin_frac": 0.01, "glass_frac": 0.0}
    assert qc_flags(ok, nuclei=5000, tissue_mm2=0.6) == []
    bad = {"small_frac": 0.279, "eosin_frac": 0.29, "glass_frac": 0.044}
    flags = qc_flags(bad, nuclei=5457, tissue_mm2=0.64)
    assert len(flags) == 3
    assert flags[0].startswith("tiny objects: 27.9% of nuclei under 10 µm²")
    assert "eosin-dominant" in flags[1]
    assert "bare glass: 4.4%" in flags[2]


def test_flags_for_empty_or_implausibly_dense_tissue() -> None:
    assert qc_flags({}, nuclei=0, tissue_mm2=1.5) == ["no nuclei in 1.5 mm² of tissue"]
    (dense,) = qc_flags({}, nuclei=100_000, tissue_mm2=1.0)
    assert dense.startswith("100,000 nuclei per mm²")
    assert qc_flags({}, nuclei=0, tissue_mm2=0.0) == []  # no tissue: nothing to expect
