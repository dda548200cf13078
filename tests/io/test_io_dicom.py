"""DICOM WSI reader on the real CMU-1 pyramid, the OpenSlide and highdicom files, and variants
written from them (offset tables, fragments, TILED_SPARSE, RLE, photometric interpretations)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence

from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io import open_slide
from nucscale.io._synthetic import downsample2

Psnr = Callable[[np.ndarray, np.ndarray], float]
CMU1_LEVELS = [
    (2220, 2967), (1110, 1483), (555, 741), (277, 370), (138, 185), (69, 92),
    (34, 46), (17, 23), (8, 11), (4, 5), (2, 2), (1, 1),
]  # fmt: skip


# -- the real CMU-1 pyramid -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cmu1_dicom_level0(cmu1_dicom: Path) -> np.ndarray:
    with open_slide(cmu1_dicom) as slide:
        return slide.read_region(0, 0, 0, *slide.dimensions)


def test_cmu1_dicom_folder_metadata(cmu1_dicom: Path) -> None:
    with open_slide(cmu1_dicom) as slide:
        assert slide.backend == "dicom"
        assert slide.level_dimensions == tuple(CMU1_LEVELS)
        assert slide.mpp == pytest.approx(0.499)
        assert slide.level_downsamples[1] == pytest.approx(2.0, abs=0.01)
        assert slide.level_downsamples[-1] == pytest.approx((2220 + 2967) / 2, rel=0.01)


@pytest.mark.parametrize("member", ["level-0-frames-0-30.dcm", "level-7-frames-0-1.dcm"])
def test_cmu1_dicom_given_as_one_file(cmu1_dicom: Path, member: str) -> None:
    with open_slide(cmu1_dicom / member) as slide:
        assert slide.backend == "dicom"
        assert len(slide.levels) == 12
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        tile = slide.read_region(0, 1000, 1000, 64, 64)
    with open_slide(cmu1_dicom) as folder:
        np.testing.assert_array_equal(tile, folder.read_region(0, 1000, 1000, 64, 64))


def test_cmu1_dicom_matches_svs_over_level0(
    cmu1_dicom_level0: np.ndarray, cmu1_level0: np.ndarray, psnr: Psnr
) -> None:
    """The DICOM frames are a JPEG re-encoding (4:2:0 chroma) of the SVS, so RGB agreement is
    limited by the file, not the reader: pydicom's own decoder gets the same 31.8 dB (checked
    in the next test). Luma agrees at 41 dB. OpenSlide 4.0.1's false colours give ~10 dB."""
    assert cmu1_dicom_level0.shape == cmu1_level0.shape == (2967, 2220, 3)
    assert psnr(cmu1_dicom_level0, cmu1_level0) >= 31.0

    def luma(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    mse = float(np.mean((luma(cmu1_dicom_level0) - luma(cmu1_level0)) ** 2))
    assert 10 * np.log10(255.0**2 / mse) >= 40.0
    # Colour balance: white background stays white (the YCbCr-as-RGB bug turns it pink).
    glass = cmu1_level0.min(axis=2) > 220
    assert np.abs(cmu1_dicom_level0[glass].mean(0) - cmu1_level0[glass].mean(0)).max() < 2
    assert psnr(cmu1_dicom_level0[:500, :500], cmu1_level0[:500, :500]) >= 40.0  # frame 0


@pytest.mark.filterwarnings("ignore:.*Photometric Interpretation.*:UserWarning")
def test_cmu1_dicom_equals_pydicom_decoding(
    cmu1_dicom: Path, cmu1_dicom_level0: np.ndarray, psnr: Psnr
) -> None:
    ds = pydicom.dcmread(cmu1_dicom / "level-0-frames-0-30.dcm")
    frames = ds.pixel_array  # (30, 500, 500, 3), pydicom honours the JFIF marker too
    full = np.full((3000, 2500, 3), 255, np.uint8)
    for f, frame in enumerate(frames):
        r, c = divmod(f, 5)
        full[r * 500 : (r + 1) * 500, c * 500 : (c + 1) * 500] = frame
    assert psnr(cmu1_dicom_level0, full[:2967, :2220]) >= 60.0


def test_cmu1_dicom_level1(cmu1_dicom: Path, cmu1_level0: np.ndarray, psnr: Psnr) -> None:
    with open_slide(cmu1_dicom) as slide:
        level1 = slide.read_region(1, 0, 0, *slide.level_dimensions[1])
        part = slide.read_region(1, 490, 490, 30, 30)  # crosses four frames
    assert level1.shape == (1483, 1110, 3)
    np.testing.assert_array_equal(part, level1[490:520, 490:520])
    # The converter resampled with a sharper filter than a 2x2 box: agreement is moderate.
    assert psnr(level1, downsample2(cmu1_level0)) >= 24.0
    assert np.abs(level1.mean((0, 1)) - downsample2(cmu1_level0).mean((0, 1))).max() < 2


def test_cmu1_dicom_top_level_is_one_pixel(cmu1_dicom: Path) -> None:
    with open_slide(cmu1_dicom) as slide:
        px = slide.read_region(11, 0, 0, 2, 1)
    assert px.shape == (1, 2, 3)
    assert (px[0, 1] == 255).all()  # padding
    assert px[0, 0].min() < 250  # the slide's mean colour, not glass


# -- small real files -----------------------------------------------------------------------------
def test_openslide_boxes_dicom(openslide_fixtures: Path) -> None:
    with open_slide(openslide_fixtures / "boxes_0.dcm") as slide:
        assert slide.backend == "dicom"
        assert slide.vendor == "Leica Biosystems"
        assert slide.level_dimensions == ((16, 16),)  # boxes_1 is a THUMBNAIL: skipped
        assert slide.mpp == pytest.approx(0.499)
        px = slide.read_region(0, 0, 0, 16, 16)
    with open_slide(openslide_fixtures / "small.svs") as svs:
        np.testing.assert_array_equal(px, svs.read_region(0, 0, 0, 16, 16))  # same JPEG crop


def test_highdicom_rgb(highdicom_dir: Path) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    with open_slide(highdicom_dir / "sm_image.dcm") as slide:
        assert slide.vendor == "Test Manufacturer"
        assert slide.dimensions == (50, 50)
        px = slide.read_region(0, 0, 0, 50, 50)
    expected = _assemble(ds.pixel_array, 5)
    np.testing.assert_array_equal(px, expected)


def test_highdicom_grayscale_is_replicated(highdicom_dir: Path) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image_grayscale.dcm")
    with open_slide(highdicom_dir / "sm_image_grayscale.dcm") as slide:
        px = slide.read_region(0, 0, 0, 50, 50)
    assert px.shape == (50, 50, 3)
    assert (px[:, :, 0] == px[:, :, 1]).all()
    assert (px[:, :, 1] == px[:, :, 2]).all()
    grey = _assemble(ds.pixel_array[..., None], 5)[:, :, 0].astype(np.float64)
    # one window per slide: 0 to the top of the bit depth the values use (capped by BitsStored)
    bits = min(ds.BitsStored, max(8, int(np.ceil(np.log2(grey.max() + 1)))))
    top = 2**bits - 1
    np.testing.assert_array_equal(px[:, :, 0], np.rint(grey * 255 / top).astype(np.uint8))


def test_highdicom_jpegls_equals_uncompressed(highdicom_dir: Path) -> None:
    # pydicom has no JPEG-LS plugin here; the same pixels are stored uncompressed beside it.
    with open_slide(highdicom_dir / "sm_image_jpegls.dcm") as slide:
        px = slide.read_region(0, 0, 0, 50, 50)
    with open_slide(highdicom_dir / "sm_image.dcm") as ref:
        np.testing.assert_array_equal(px, ref.read_region(0, 0, 0, 50, 50))
    assert len(np.unique(px)) > 10  # not a constant image


@pytest.mark.parametrize(("name", "modality"), [("ct_image.dcm", "CT"), ("dx_image.dcm", "DX")])
def test_non_wsi_dicom_refused(highdicom_dir: Path, name: str, modality: str) -> None:
    with pytest.raises(SlideFormatError, match=rf"DICOM {modality} image .*not a whole-slide"):
        open_slide(highdicom_dir / name)


def test_folder_of_non_wsi_dicom_refused(highdicom_dir: Path, tmp_path: Path) -> None:
    shutil.copy(highdicom_dir / "ct_image.dcm", tmp_path / "a.dcm")
    with pytest.raises(SlideFormatError, match="CT images but no VL Whole Slide"):
        open_slide(tmp_path)


def test_folder_without_dicom_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SlideFormatError, match="folder holds no DICOM files"):
        open_slide(tmp_path)


# -- variants written from the real files ---------------------------------------------------------
def _assemble(frames: np.ndarray, per_row: int) -> np.ndarray:
    rows = [
        np.concatenate(list(frames[i : i + per_row]), axis=1)
        for i in range(0, len(frames), per_row)
    ]
    return np.concatenate(rows, axis=0)


def _save(ds: pydicom.Dataset, folder: Path, name: str = "slide.dcm") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    return folder / name


@pytest.fixture
def sm_rgb(highdicom_dir: Path) -> np.ndarray:
    with open_slide(highdicom_dir / "sm_image.dcm") as slide:
        return slide.read_region(0, 0, 0, 50, 50)


@pytest.mark.parametrize(("has_bot", "mode"), [(True, "encap"), (False, "scan")])
def test_fragmented_frames(
    highdicom_dir: Path, tmp_path: Path, sm_rgb: np.ndarray, has_bot: bool, mode: str
) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image_jpegls.dcm")
    frames = list(generate_frames(ds.PixelData, number_of_frames=25))
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=has_bot)
    with open_slide(_save(ds, tmp_path)) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 50, 50), sm_rgb)
        assert slide._dlevels[0].instances[0].mode == mode  # type: ignore[attr-defined]


def test_tiled_sparse_missing_tiles_are_white(
    highdicom_dir: Path, tmp_path: Path, sm_rgb: np.ndarray
) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    frames = ds.pixel_array
    keep = [f for f in range(25) if f not in (7, 24)][::-1]  # drop two tiles, reverse order
    ds.PixelData = np.ascontiguousarray(frames[keep]).tobytes()
    ds.NumberOfFrames = len(keep)
    ds.DimensionOrganizationType = "TILED_SPARSE"
    items = []
    for f in keep:
        r, c = divmod(f, 5)
        pos = pydicom.Dataset()
        pos.RowPositionInTotalImagePixelMatrix = r * 10 + 1
        pos.ColumnPositionInTotalImagePixelMatrix = c * 10 + 1
        item = pydicom.Dataset()
        item.PlanePositionSlideSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    with open_slide(_save(ds, tmp_path)) as slide:
        px = slide.read_region(0, 0, 0, 50, 50)
    expected = sm_rgb.copy()
    expected[10:20, 20:30] = 255  # frame 7 = row 1, col 2
    expected[40:50, 40:50] = 255  # frame 24 = row 4, col 4
    np.testing.assert_array_equal(px, expected)


def test_rle_via_pydicom(highdicom_dir: Path, tmp_path: Path, sm_rgb: np.ndarray) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    ds.compress(pydicom.uid.RLELossless, encoding_plugin="pydicom")
    with open_slide(_save(ds, tmp_path)) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 50, 50), sm_rgb)


def test_ybr_full_native_is_converted(
    highdicom_dir: Path, tmp_path: Path, sm_rgb: np.ndarray
) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    ybr = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL")
    ds.PixelData = ybr.tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    with open_slide(_save(ds, tmp_path)) as slide:
        px = slide.read_region(0, 0, 0, 50, 50)
    assert np.abs(px.astype(int) - sm_rgb).max() <= 2  # rounding in the two conversions


def test_monochrome1_is_inverted(highdicom_dir: Path, tmp_path: Path, sm_rgb: np.ndarray) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    grey = ds.pixel_array[..., 1].copy()  # (25, 10, 10) uint8
    ds.PixelData = grey.tobytes()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    del ds.PlanarConfiguration
    with open_slide(_save(ds, tmp_path)) as slide:
        px = slide.read_region(0, 0, 0, 50, 50)
    np.testing.assert_array_equal(px[:, :, 0], 255 - sm_rgb[:, :, 1])
    assert (px[:, :, 0] == px[:, :, 2]).all()


def test_frame_count_must_match_grid(highdicom_dir: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    ds.NumberOfFrames = 24
    with pytest.raises(SlideFormatError, match=r"NumberOfFrames=24 does not match the 5x5"):
        open_slide(_save(ds, tmp_path))


@pytest.mark.parametrize("tag", ["TotalPixelMatrixColumns", "Rows", "NumberOfFrames"])
def test_missing_required_tag(highdicom_dir: Path, tmp_path: Path, tag: str) -> None:
    ds = pydicom.dcmread(highdicom_dir / "sm_image.dcm")
    delattr(ds, tag)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom may warn about the now-invalid dataset
        path = _save(ds, tmp_path)
    with pytest.raises(SlideFormatError, match=f"missing required DICOM tag {tag}"):
        open_slide(path)


def test_truncated_dicom(cmu1_dicom: Path, tmp_path: Path) -> None:
    data = (cmu1_dicom / "level-0-frames-0-30.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:100_000])
    with (
        pytest.raises((SlideFormatError, SlideReadError), match=r"cut\.dcm: "),
        open_slide(tmp_path / "cut.dcm") as slide,
    ):
        slide.read_region(0, 0, 0, *slide.dimensions)


def test_largest_series_wins_in_folder(
    highdicom_dir: Path, openslide_fixtures: Path, tmp_path: Path
) -> None:
    shutil.copy(highdicom_dir / "sm_image.dcm", tmp_path)  # 50x50
    shutil.copy(openslide_fixtures / "boxes_0.dcm", tmp_path)  # 16x16, another series
    with open_slide(tmp_path) as slide:
        assert slide.dimensions == (50, 50)
    with open_slide(tmp_path / "boxes_0.dcm") as slide:  # a file keeps its own series
        assert slide.dimensions == (16, 16)
