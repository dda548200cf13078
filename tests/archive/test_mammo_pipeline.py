"""Mammograms of generated CBIS-DDSM-style archives through nucscale train, run, evaluate and
query; a mixed archive through nucscale run. (Lesions, crops and masks are generated: a test
of the machinery, not a medical model.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
import zarr
from PIL import Image

from nucscale.archive import read_index
from nucscale.archive._synthetic import TruthRow
from nucscale.store._mammograms import mammogram_id

Archives = dict[int, tuple[Path, Path]]


def _means(text: str) -> list[tuple[float, float]]:
    return [(float(d), float(i)) for d, i in re.findall(r"│ mean\s+│ ([\d.]+) │ ([\d.]+) │", text)]


def test_trained_mass_model_finds_the_lesions(mass_weights: tuple[Path, str]) -> None:
    weights, text = mass_weights
    (train_dice, _), (held_dice, held_iou) = _means(text)
    # measured 0.659 / 0.335 (seeded and deterministic); floors leave room for CPU rounding
    assert train_dice > 0.5
    assert held_dice > 0.2
    assert held_iou < held_dice
    assert weights.stat().st_size < 2_000_000


@pytest.fixture(scope="module")
def mass_run(
    small_archives: Archives,
    mass_weights: tuple[Path, str],
    tmp_path_factory: pytest.TempPathFactory,
    nucscale_cli: Callable[..., Any],
) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("mass-run") / "out"
    res = nucscale_cli(
        "run", str(small_archives[2][1]), "--out", str(out), "--weights", str(mass_weights[0]),
        "--workers", "2", "--dashboard", ":0", "--mpp", "200",
    )  # fmt: skip
    return out, res


def test_run_segments_every_mammogram_of_the_index(
    mass_run: tuple[Path, Any], small_archives: Archives
) -> None:
    out, res = mass_run
    assert res.returncode == 0, res.stdout + res.stderr
    assert "8 mammograms done, 0 failed" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    index = read_index(small_archives[2][1])
    fulls = index[index["role"] == "full"]
    table = pq.read_table(out / "mammograms.parquet").to_pandas()
    assert sorted(table["mammogram_id"]) == sorted(map(mammogram_id, fulls["sop_instance_uid"]))
    assert set(table["status"]) == {"done"}
    # 1/4-size CBIS-DDSM scans: 200 µm/px given by --mpp (CBIS-DDSM records no spacing)
    assert set(table["spacing_mm"]) == {0.2}
    # every other file is skipped with its reason: 20 named, the count of the rest
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 20
    assert f"... and {len(index) - 8 - 20} more skipped" in res.stderr
    assert any("CBIS-DDSM crop of" in line for line in skipped)
    assert any("CBIS-DDSM ROI mask of" in line for line in skipped)
    assert any("not DICOM" in line for line in skipped)


def test_outputs_of_a_mammogram_agree(mass_run: tuple[Path, Any], small_archives: Archives) -> None:
    out, _ = mass_run
    index = read_index(small_archives[2][1])
    full = index[index["role"] == "full"].iloc[0]
    mid = mammogram_id(full["sop_instance_uid"])
    label = np.asarray(zarr.open_group(str(out / "labels" / f"{mid}.zarr"), mode="r")["0"][:])
    assert label.shape == (full["rows"], full["columns"])
    regions = pq.read_table(out / "regions" / f"{mid}.parquet").to_pandas()
    assert regions["area_px"].sum() == label.sum()
    np.testing.assert_allclose(regions["area_mm2"], regions["area_px"] * 0.04)
    # the DICOM Segmentation references its mammogram and holds the same mask
    seg = pydicom.dcmread(out / "seg" / f"{mid}.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == full["sop_instance_uid"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Mass"
    np.testing.assert_array_equal(np.asarray(seg.pixel_array) > 0, label > 0)
    # the preprocessed mammogram: 16-bit, physical size from the spacing, truth as a label
    image = zarr.open_group(str(out / "mammograms" / f"{mid}.zarr"), mode="r")
    assert image["0"].dtype == np.uint16
    ms = image.attrs["ome"]["multiscales"][0]
    assert ms["axes"][0]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [200.0, 200.0]
    truth = np.asarray(image["labels"]["truth"]["0"][:])
    assert truth.shape == image["0"].shape
    assert truth.sum() == (np.asarray(Image.open(full["label_path"])) > 0).sum()


def test_evaluate_and_query(
    mass_run: tuple[Path, Any], small_archives: Archives, nucscale_cli: Callable[..., Any]
) -> None:
    out, _ = mass_run
    res = nucscale_cli("evaluate", str(out), str(small_archives[2][1]), "--json",
                       str(out.parent / "scores.json"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    scores = json.loads((out.parent / "scores.json").read_text())
    assert len(scores["per_image"]) == 8
    assert 0.2 < scores["mean"]["dice"] <= 1
    assert re.search(rf"mean of 8\s*│ {scores['mean']['dice']:.3f} │", res.stdout), res.stdout
    q = nucscale_cli("query", str(out), "SELECT count(*) AS n FROM mammograms WHERE regions > 0")
    assert q.returncode == 0, q.stderr
    assert re.search(r"│ (\d+)\s*│", q.stdout)


def test_a_rerun_skips_done_mammograms(
    mass_run: tuple[Path, Any],
    small_archives: Archives,
    mass_weights: tuple[Path, str],
    nucscale_cli: Callable[..., Any],
) -> None:
    out, _ = mass_run
    res = nucscale_cli(
        "run", str(small_archives[2][1]), "--out", str(out), "--weights", str(mass_weights[0]),
        "--workers", "1", "--dashboard", ":0", "--mpp", "200",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("done earlier") == 8


def test_mixed_archive(
    archive: tuple[Path, list[TruthRow]],
    mass_weights: tuple[Path, str],
    tmp_path: Path,
    nucscale_cli: Callable[..., Any],
) -> None:
    """WSI series and mammograms processed in one run, the rest skipped with their reasons;
    without a mass model the mammograms are listed first; filters pick instances."""
    root, _ = archive
    out = tmp_path / "out"
    res = nucscale_cli("run", str(root), "--out", str(out), "--model", "baseline",
                       "--weights", str(mass_weights[0]), "--mpp", "50", "--workers", "2",
                       "--dashboard", ":0", "--modality", "SM", "--modality", "CT",
                       "--modality", "MG")  # fmt: skip
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "Traceback" not in text
    # the CMU-1 pyramid and highdicom's three one-level slides, one slide per series
    done = [line for line in text.splitlines() if line.startswith("│ wsi-")]
    assert len(done) == 4, text
    assert "4 done, 0 failed" in text
    assert "8 mammograms done, 0 failed" in text
    assert not any(" MR " in line or "RTPLAN" in line for line in text.splitlines())
    without = nucscale_cli("run", str(root), "--out", str(tmp_path / "o1"), "--modality", "MG")
    assert without.returncode == 2
    skipped = [line for line in without.stderr.splitlines() if line.startswith("skipped: ")]
    # mammograms left unsegmented come first among the (at most 20) lines
    assert [("no mass model given" in line) for line in skipped[:8]] == [True] * 8
    ct = nucscale_cli("run", str(root), "--out", str(tmp_path / "o2"), "--modality", "CT")
    assert ct.returncode == 2
    lines = ct.stderr.splitlines()
    assert any(line.endswith("CT CT Image Storage: neither a whole-slide image nor a mammogram")
               for line in lines), lines  # fmt: skip
    assert lines[-1] == "error: no whole-slide image or mammogram to process in the inputs"
    assert not (tmp_path / "o2" / "manifest.parquet").exists()
