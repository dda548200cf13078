"""nucscale index on a generated CBIS-DDSM-style archive: roles, pairs, labels, junk, reuse."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from nucscale.archive import INDEX_SCHEMA, IndexResult, build_index, read_index
from nucscale.archive._synthetic import TruthRow


def _rows(result: IndexResult) -> dict[str, dict]:
    """Rows by path, nulls as None (pandas gives NaN for some)."""
    table = result.table.astype(object).where(result.table.notna(), None)
    return {r["path"]: r for r in table.to_dict("records")}


def test_every_role_and_pair_is_found(
    archive: tuple[Path, list[TruthRow]], indexed: IndexResult
) -> None:
    _, truth = archive
    rows = _rows(indexed)
    got = [
        (rows[t.path]["role"], rows[t.path]["pairs_with"], rows[t.path]["sop_instance_uid"])
        for t in truth
    ]
    assert got == [(t.role, t.pairs_with, t.sop_instance_uid) for t in truth]
    assert len(truth) == 8 + 2 * 9  # 8 mammograms, 9 lesions (one mammogram has two)
    # the names do not tell: crops were written as 1-1.dcm and as 1-2.dcm
    assert {Path(t.path).name for t in truth if t.role == "crop"} == {"1-1.dcm", "1-2.dcm"}


def test_case_fields_from_the_folders(
    archive: tuple[Path, list[TruthRow]], indexed: IndexResult
) -> None:
    rows = _rows(indexed)
    for t in archive[1]:
        row = rows[t.path]
        case = f"Mass-Test_{row['case_patient']}_{row['side']}_{row['view']}"
        assert (case, row["abnormality"], row["split"]) == (t.case, "mass", "test")
        number = row["abnormality_number"]
        assert (None if number is None else int(number)) == t.number


def test_masks_of_a_mammogram_are_summed(
    archive: tuple[Path, list[TruthRow]], indexed: IndexResult
) -> None:
    _, truth = archive
    rows = _rows(indexed)
    fulls = [t for t in truth if t.role == "full"]
    assert sorted(int(rows[t.path]["n_masks"]) for t in fulls) == [1] * 7 + [2]
    for full in fulls:
        masks = [t for t in truth if t.role == "mask" and t.pairs_with == full.sop_instance_uid]
        union = np.zeros_like(pydicom.dcmread(masks[0].path).pixel_array, dtype=bool)
        for m in masks:
            union |= pydicom.dcmread(m.path).pixel_array > 0
        label = np.asarray(Image.open(rows[full.path]["label_path"]))
        np.testing.assert_array_equal(label, union.astype(np.uint8) * 255)
    two = next(t for t in fulls if int(rows[t.path]["n_masks"]) == 2)
    label = np.asarray(Image.open(rows[two.path]["label_path"])) > 0
    single = pydicom.dcmread(
        next(t.path for t in truth if t.role == "mask" and t.pairs_with == two.sop_instance_uid)
    ).pixel_array
    assert label.sum() > (single > 0).sum()  # both lesions are in the label


def test_other_files_are_listed_with_their_reason(indexed: IndexResult) -> None:
    df = indexed.table
    by_name = {Path(p).name: r for p, r in _rows(indexed).items()}
    assert by_name["DICOMDIR"]["status"] == "skipped"
    assert "DICOMDIR" in by_name["DICOMDIR"]["reason"]
    assert by_name["README.txt"]["status"] == "skipped"
    assert "not DICOM" in by_name["README.txt"]["reason"]
    damaged = next(r for p, r in _rows(indexed).items() if "damaged" in p)
    assert damaged["status"] == "error"
    assert "cut short" in damaged["reason"]
    ok = df[df["status"] == "ok"]
    # the shared CMU-1 pyramid (12 files) and highdicom's 3 sm_image files are WSI instances
    assert (ok["kind"] == "wsi").sum() == 12 + 3
    assert set(ok.loc[ok["kind"] == "wsi", "modality"]) == {"SM"}
    assert "RTPLAN" in set(ok.loc[ok["kind"] == "non-image", "modality"])
    assert {"CT", "MR", "DX"} <= set(ok.loc[ok["kind"] == "image", "modality"])
    # every row has a status, and every row that is not ok says why
    assert set(df["status"]) == {"ok", "skipped", "error"}
    assert df.loc[df["status"] != "ok", "reason"].notna().all()


def test_header_columns(archive: tuple[Path, list[TruthRow]], indexed: IndexResult) -> None:
    rows = _rows(indexed)
    full = rows[next(t.path for t in archive[1] if t.role == "full")]
    assert full["modality"] == "MG"
    assert full["photometric"] == "MONOCHROME2"
    assert int(full["bits_stored"]) == 16
    assert full["laterality"] in ("L", "R")
    assert full["view_position"] in ("CC", "MLO")
    assert full["transfer_syntax"] == "Explicit VR Little Endian"
    assert full["sop_class"] == "Secondary Capture Image Storage"
    wsi = next(r for r in rows.values() if r["kind"] == "wsi" and r["frames"] == 30)
    assert wsi["pixel_spacing_mm"] == pytest.approx(0.000499, rel=0.01)
    assert wsi["pixel_spacing_source"] == "PixelMeasuresSequence"


def test_written_index_reads_back_with_its_schema(indexed: IndexResult, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = Path(next(iter(indexed.table["label_path"].dropna()))).parent.with_suffix(".parquet")
    out = out.with_name("index.parquet")
    assert pq.read_schema(out).remove_metadata() == INDEX_SCHEMA
    back = read_index(out)
    assert len(back) == len(indexed.table)
    (tmp_path / "other.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"other\.parquet"):
        read_index(tmp_path / "other.parquet")


def test_reindex_reads_only_changed_files(
    archive: tuple[Path, list[TruthRow]], tmp_path: Path
) -> None:
    root = archive[0]
    sub = tmp_path / "copy"
    shutil.copytree(root / "CBIS-DDSM", sub / "CBIS-DDSM")
    out = tmp_path / "index.parquet"
    first = build_index([sub], out)
    again = build_index([sub], out)
    assert (again.counts.read, again.counts.reused) == (0, first.counts.files)
    assert again.table.equals(first.table)
    touched = next(sub.rglob("1-2.dcm"))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    third = build_index([sub], out)
    assert (third.counts.read, third.counts.reused) == (1, first.counts.files - 1)


def test_a_case_without_its_full_mammogram(
    archive: tuple[Path, list[TruthRow]], tmp_path: Path
) -> None:
    root, truth = archive
    case = next(t.case for t in truth if t.number == 2)
    sub = tmp_path / "partial"
    for t in truth:
        if t.case == case and t.role != "full":
            dest = sub / Path(t.path).relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(t.path, dest)
    result = build_index([sub], tmp_path / "index.parquet")
    df = result.table
    assert len(df) == 4
    assert df["role"].isna().all()
    assert df["reason"].str.contains("full mammogram is missing").all()
    assert result.labels == 0


def test_flat_names_two_files_would_share_are_refused(indexed: IndexResult, tmp_path: Path) -> None:
    from nucscale.archive import write_flat
    from nucscale.errors import OutputError

    df = indexed.table
    full = df[df["role"] == "full"].head(1)
    twice = pd.concat([full, full.assign(path=full["path"] + ".copy")])
    with pytest.raises(OutputError, match="two files would share this name"):
        write_flat(twice, tmp_path / "flat")
    assert not (tmp_path / "flat").exists()
