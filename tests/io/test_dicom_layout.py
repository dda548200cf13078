"""DICOM WSI frame layout: TILED_FULL only when declared, per-frame positions otherwise, and a
multi-frame file with neither refused. Files are the real CMU-1 level-0 JPEG frames (6 rows x 5
columns of 500 px) rewritten in other orders and layouts."""

from __future__ import annotations

import copy
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from nucscale.cli import app
from nucscale.errors import SlideFormatError
from nucscale.io import open_slide

LEVEL0 = "level-0-frames-0-30.dcm"
NX, NY, TILE = 5, 6, 500  # CMU-1 level 0: 2220 x 2967 px


def _read(path: Path) -> pydicom.Dataset:
    """A CMU-1 file, its invalid Implementation Class UID (a DCMTK trailing dot) replaced so
    that pydicom writes it without a warning."""
    ds = pydicom.dcmread(path)
    del ds.file_meta[0x00020012]  # not read: reading it warns
    ds.file_meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    return ds


@pytest.fixture(scope="module")
def level0(cmu1_dicom: Path) -> pydicom.Dataset:
    return _read(cmu1_dicom / LEVEL0)


@pytest.fixture(scope="module")
def jpeg_frames(level0: pydicom.Dataset) -> list[bytes]:
    return list(generate_frames(level0.PixelData, number_of_frames=NX * NY))


@pytest.fixture(scope="module")
def row_major(jpeg_frames: list[bytes]) -> np.ndarray:
    """Level 0 assembled by hand: frame f is tile (f // 5, f % 5), decoded by libjpeg."""
    full = np.zeros((NY * TILE, NX * TILE, 3), np.uint8)
    for f, data in enumerate(jpeg_frames):
        r, c = divmod(f, NX)
        full[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = imagecodecs.jpeg8_decode(data)
    return full[:2967, :2220]


def _rewrite(
    level0: pydicom.Dataset,
    frames: list[bytes],
    folder: Path,
    *,
    organisation: str | None,
    positions: list[tuple[int, int]] | None = None,
    name: str = "slide.dcm",
    series_uid: str | None = None,
) -> Path:
    """level0 with ``frames`` (JPEG bytes) in the given order; per-frame positions when given."""
    ds = copy.deepcopy(level0)
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds.NumberOfFrames = len(frames)
    if organisation is None:
        del ds.DimensionOrganizationType
    else:
        ds.DimensionOrganizationType = organisation
    if positions is not None:
        items = []
        for r, c in positions:
            pos = pydicom.Dataset()
            pos.RowPositionInTotalImagePixelMatrix = r * TILE + 1
            pos.ColumnPositionInTotalImagePixelMatrix = c * TILE + 1
            item = pydicom.Dataset()
            item.PlanePositionSlideSequence = Sequence([pos])
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    return folder / name


def _level0(path: Path) -> np.ndarray:
    with open_slide(path) as slide:
        return slide.read_region(0, 0, 0, *slide.dimensions)


# -- (a) TILED_FULL declared ---------------------------------------------------------------------
def test_shared_pyramid_declares_tiled_full(cmu1_dicom: Path, highdicom_dir: Path) -> None:
    files = [*cmu1_dicom.glob("*.dcm"), *highdicom_dir.glob("sm_image*.dcm")]
    assert len(files) == 15
    for f in files:
        assert pydicom.dcmread(f, stop_before_pixels=True).DimensionOrganizationType == "TILED_FULL"


def test_tiled_full_is_row_major(cmu1_dicom: Path, row_major: np.ndarray) -> None:
    np.testing.assert_array_equal(_level0(cmu1_dicom), row_major)
    np.testing.assert_array_equal(_level0(cmu1_dicom / LEVEL0), row_major)


# -- (b) neither declared nor positioned: refused ------------------------------------------------
def _column_major(frames: list[bytes]) -> list[bytes]:
    return [frames[r * NX + c] for c in range(NX) for r in range(NY)]


REASON = (
    "30 frames but no DimensionOrganizationType TILED_FULL and no per-frame positions "
    "(PlanePositionSlideSequence): the frame order is unknown"
)


def test_undeclared_column_major_is_refused(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path
) -> None:
    path = _rewrite(level0, _column_major(jpeg_frames), tmp_path, organisation=None)
    with pytest.raises(SlideFormatError) as err:
        open_slide(path)
    assert str(err.value).startswith(f"{path}: {REASON}")
    assert "re-export" in err.value.reason  # says what to do


def test_undeclared_is_refused_whatever_the_order(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path
) -> None:
    """Row-major frames would assemble correctly, but nothing in the file says so."""
    path = _rewrite(level0, jpeg_frames, tmp_path, organisation=None)
    with pytest.raises(SlideFormatError, match="the frame order is unknown"):
        open_slide(path)


def test_undeclared_refusal_is_one_line_in_the_cli(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path
) -> None:
    path = _rewrite(level0, _column_major(jpeg_frames), tmp_path, organisation=None)
    res = CliRunner().invoke(app, ["info", str(path)], env={"COLUMNS": "400"})
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "slide.dcm" in res.output and "the frame order is unknown" in res.output


# -- (c) per-frame positions ---------------------------------------------------------------------
def test_tiled_sparse_shuffled_equals_original(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path, row_major: np.ndarray
) -> None:
    order = np.random.default_rng(15).permutation(NX * NY).tolist()
    assert order != sorted(order)
    positions = [divmod(f, NX) for f in order]
    path = _rewrite(
        level0,
        [jpeg_frames[f] for f in order],
        tmp_path,
        organisation="TILED_SPARSE",
        positions=positions,
    )
    np.testing.assert_array_equal(_level0(path), row_major)


def test_undeclared_with_positions_follows_them(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path, row_major: np.ndarray
) -> None:
    positions = [(r, c) for c in range(NX) for r in range(NY)]
    path = _rewrite(
        level0, _column_major(jpeg_frames), tmp_path, organisation=None, positions=positions
    )
    np.testing.assert_array_equal(_level0(path), row_major)


def test_tiled_sparse_with_a_frame_unpositioned_is_refused(
    level0: pydicom.Dataset, jpeg_frames: list[bytes], tmp_path: Path
) -> None:
    positions = [divmod(f, NX) for f in range(NX * NY)]
    path = _rewrite(level0, jpeg_frames, tmp_path, organisation="TILED_SPARSE", positions=positions)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[7].PlanePositionSlideSequence
    ds.save_as(path)
    with pytest.raises(SlideFormatError, match="TILED_SPARSE but frame 7 has no position"):
        open_slide(path)


# -- one frame, concatenations -------------------------------------------------------------------
def test_one_frame_needs_no_declaration(cmu1_dicom: Path, tmp_path: Path) -> None:
    ds = _read(cmu1_dicom / "level-3-frames-0-1.dcm")  # 277 x 370 in one frame
    del ds.DimensionOrganizationType
    ds.save_as(tmp_path / "one.dcm", enforce_file_format=True)
    with open_slide(cmu1_dicom) as ref:
        expected = ref.read_region(3, 0, 0, 277, 370)
    np.testing.assert_array_equal(_level0(tmp_path / "one.dcm"), expected)


@pytest.mark.parametrize("organisation", ["TILED_FULL", "TILED_SPARSE"])
def test_concatenation_parts_join(
    level0: pydicom.Dataset,
    jpeg_frames: list[bytes],
    tmp_path: Path,
    row_major: np.ndarray,
    organisation: str,
) -> None:
    """Two instances of one concatenation (frames 0-11 and 12-29), the second written first."""
    series, concat = generate_uid(), generate_uid()
    for part, (lo, hi) in enumerate([(12, 30), (0, 12)]):
        sparse = organisation == "TILED_SPARSE"
        path = _rewrite(
            level0,
            jpeg_frames[lo:hi],
            tmp_path,
            organisation=organisation,
            positions=[divmod(f, NX) for f in range(lo, hi)] if sparse else None,
            name=f"part{part}.dcm",
            series_uid=series,
        )
        ds = pydicom.dcmread(path)
        ds.ConcatenationUID = concat
        ds.ConcatenationFrameOffsetNumber = lo
        ds.InConcatenationNumber = 1 if lo == 0 else 2
        ds.InstanceNumber = ds.InConcatenationNumber
        ds.save_as(path)
    np.testing.assert_array_equal(_level0(tmp_path), row_major)
