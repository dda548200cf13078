"""Which folders are archives, and what an archive expands to for nucscale run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from nucscale.archive._synthetic import TruthRow
from nucscale.pipeline._archive_inputs import Filters, split_archives


def _with_label_series(cmu1_dicom: Path, dest: Path) -> Path:
    """The shared CMU-1 pyramid plus a LABEL image in a series of its own (as some scanners
    write it), copied to ``dest``."""
    shutil.copytree(cmu1_dicom, dest)
    ds = pydicom.dcmread(dest / "level-11-frames-0-1.dcm")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["label-series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["label-instance"])
    ds.save_as(dest / "label.dcm")
    return dest


def test_a_wsi_folder_with_a_label_series_stays_one_slide(cmu1_dicom: Path, tmp_path: Path) -> None:
    folder = _with_label_series(cmu1_dicom, tmp_path / "slide")
    plain, expanded = split_archives([str(folder)])
    assert plain == [str(folder)]
    assert (expanded.slides, expanded.mammograms, expanded.archives) == ([], [], [])


def test_an_archive_expands_to_its_slides_and_skips_the_rest(
    cmu1_dicom: Path, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    _with_label_series(cmu1_dicom, root / "slide")
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    (root / "ct").mkdir()
    shutil.copy(ct, root / "ct" / "IM1")
    plain, expanded = split_archives([str(root)], mpp=None)
    assert (plain, expanded.archives) == ([], [str(root)])
    series = pydicom.dcmread(cmu1_dicom / "level-0-frames-0-30.dcm").SeriesInstanceUID
    assert [s.slide_id for s in expanded.slides] == [f"wsi-{series}"]
    assert Path(expanded.slides[0].path).parent == root / "slide"
    reasons = dict(expanded.skipped)
    assert reasons[str(root / "ct" / "IM1")] == (
        "CT CT Image Storage: neither a whole-slide image nor a mammogram"
    )
    assert "without a VOLUME image: not a slide" in reasons[str(root / "slide" / "label.dcm")]
    assert reasons[str(root / "slide" / "SOURCE.txt")].startswith("skipped: not DICOM")
    assert len(reasons) == 3


def test_filters_and_mammograms(archive: tuple[Path, list[TruthRow]]) -> None:
    root, truth = archive
    fulls = {t.sop_instance_uid for t in truth if t.role == "full"}
    _, everything = split_archives([str(root)])
    assert {m.sop_instance_uid for m in everything.mammograms} == fulls
    assert len(everything.slides) == 4
    _, mg = split_archives([str(root)], Filters(modality=("MG",)))
    assert (len(mg.slides), len(mg.mammograms)) == (0, 8)
    patient = next(t.case for t in truth if t.role == "full")
    _, one = split_archives([str(root)], Filters(patient=(patient,)))
    assert len(one.mammograms) == 1
