"""One file, one row: what a header gives, and why a file is skipped or an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from nucscale.archive import header_row


def _ct() -> Path:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    return Path(path)


def test_a_dicom_image(tmp_path: Path) -> None:
    row = header_row(_ct())
    assert row["status"] == "ok"
    assert (row["modality"], row["kind"], row["rows"], row["columns"], row["frames"]) == (
        "CT", "image", 128, 128, 1,
    )  # fmt: skip
    assert row["pixel_spacing_source"] == "PixelSpacing"
    assert row["pixel_spacing_mm"] == pytest.approx(0.661468)
    assert row["binary"] is False
    assert row["size"] == _ct().stat().st_size


def test_a_binary_mask_is_seen_from_its_pixels(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_ct())
    mask = (np.arange(128 * 128).reshape(128, 128) % 7 == 0).astype(np.uint16) * 255
    ds.set_pixel_data(mask, "MONOCHROME2", 16, generate_instance_uid=False)
    ds.save_as(tmp_path / "mask.dcm")
    assert header_row(tmp_path / "mask.dcm")["binary"] is True


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello\n", "too short for the DICOM preamble"),
        (b"\x89PNG" + bytes(300), "no 'DICM' marker at byte 128"),
    ],
)
def test_not_dicom_is_skipped(tmp_path: Path, content: bytes, reason: str) -> None:
    (tmp_path / "f").write_bytes(content)
    row = header_row(tmp_path / "f")
    assert row["status"] == "skipped"
    assert row["reason"].startswith("not DICOM: ")
    assert reason in row["reason"]


def test_a_header_without_uids_is_an_error(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_ct())
    del ds.SeriesInstanceUID
    del ds.StudyInstanceUID
    ds.save_as(tmp_path / "x.dcm")
    row = header_row(tmp_path / "x.dcm")
    assert row["status"] == "error"
    assert row["reason"] == "header lacks StudyInstanceUID, SeriesInstanceUID"


@pytest.mark.parametrize(
    ("keep", "reason"),
    [(400, "header lacks SOPInstanceUID"), (0.6, "its uncompressed pixels need 32768: cut short")],
)
def test_a_file_cut_short_is_an_error_not_a_crash(tmp_path: Path, keep: float, reason: str) -> None:
    data = _ct().read_bytes()
    (tmp_path / "x.dcm").write_bytes(data[: int(keep if keep > 1 else keep * len(data))])
    row = header_row(tmp_path / "x.dcm")
    assert row["status"] == "error"
    assert reason in row["reason"]


def test_missing_file_is_an_error_row(tmp_path: Path) -> None:
    row = header_row(tmp_path / "gone.dcm")
    assert row["status"] == "error"
    assert row["reason"].startswith("cannot stat")
