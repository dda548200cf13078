"""The synthetic smear generator draws what its docstring says (generated data, not real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.measure import regionprops_table

from nucscale.smear import CLASSES, SmearSpec, generate_smear, write_smears
from nucscale.smear._generate import _STAIN


def test_a_seed_is_one_image() -> None:
    a, b = generate_smear(SmearSpec(), 7), generate_smear(SmearSpec(), 7)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.rgb, generate_smear(SmearSpec(), 8).rgb)


def test_labels_and_cell_table_agree() -> None:
    s = generate_smear(SmearSpec(), 1)
    assert s.rgb.shape == (768, 768, 3) and s.rgb.dtype == np.uint8
    drawn = set(np.unique(s.labels)) - {0}
    assert drawn == set(s.cells["label"])
    assert set(s.cells["cell_class"]) == set(CLASSES)
    area = np.bincount(s.labels.ravel())[s.cells["label"]] * 0.25**2
    np.testing.assert_allclose(s.cells["area_um2"], area)


def _shapes(seeds: range) -> pd.DataFrame:
    tables = []
    for seed in seeds:
        s = generate_smear(SmearSpec(overlap=0.0), seed)
        props = pd.DataFrame(regionprops_table(
            s.labels, properties=("label", "eccentricity", "solidity", "area")))  # fmt: skip
        cells = s.cells[~s.cells["touches_border"]].merge(props, on="label")
        tables.append(cells)
    return pd.concat(tables)


def test_each_class_has_its_shape() -> None:
    """Discocytes are round, elliptocytes elongated and convex, sickle cells elongated and
    concave: measured on the true labels of cells clear of the border and of each other."""
    m = _shapes(range(4)).groupby("cell_class")[["eccentricity", "solidity", "area"]].median()
    assert m.loc["discocyte", "eccentricity"] < 0.5
    assert m.loc["elliptocyte", "eccentricity"] > 0.7 and m.loc["elliptocyte", "solidity"] > 0.95
    assert m.loc["sickle", "eccentricity"] > 0.9 and m.loc["sickle", "solidity"] < 0.8
    # sizes in µm²: a 7.5 µm disc is 44 µm² (0.25 µm/px: 16 px per µm²)
    assert 35 * 16 < m.loc["discocyte", "area"] < 55 * 16


def test_discocytes_are_paler_in_the_middle() -> None:
    s = generate_smear(SmearSpec(overlap=0.0, platelets=0), 3)
    density = -np.log10((s.rgb[..., 1].astype(float) + 1) / 256)
    ratios = []
    discs = s.cells[(s.cells["cell_class"] == "discocyte") & ~s.cells["touches_border"]]
    for cell in discs.itertuples():
        y, x = round(cell.centroid_y), round(cell.centroid_x)
        mask = s.labels == cell.label
        ratios.append(density[y - 1 : y + 2, x - 1 : x + 2].mean() / density[mask].max())
    assert len(ratios) >= 10 and np.median(ratios) < 0.85  # the central pallor


def test_written_folder_is_marked_generated(tmp_path: Path) -> None:
    cells = pd.read_parquet(write_smears(tmp_path, 2))
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["smear-000.tif", "smear-001.tif"]
    assert "not real" in (tmp_path / "README.txt").read_text()
    with tifffile.TiffFile(tmp_path / "smear-000.tif") as tif:
        x_res = tif.pages[0].tags["XResolution"].value
        assert x_res[0] / x_res[1] == 40000.0  # px/cm at 0.25 µm/px
    truth = tifffile.imread(tmp_path / "truth" / "smear-001.tif")
    assert set(np.unique(truth)) - {0} == set(cells.loc[cells["image"] == "smear-001", "label"])
    assert len(_STAIN) == 3
