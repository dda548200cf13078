"""DICOM WSI optical paths (channels), focal planes and >8-bit samples, on files written from
real DSB 2018 fluorescence fields: the nuclear optical path is read (never "the first"), --z
picks or projects focal planes, and 16-bit samples go through the slide's intensity window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from nucscale.errors import SlideFormatError
from nucscale.io import open_slide
from nucscale.io._intensity import describe
from nucscale.io._options import ReadOptions

# Three real fluorescence fields (256 x 256), cropped so the 64-px tiles overhang the edges.
NUCLEI, OTHER, THIRD = "0a849e0eb15f", "1ef68e93964c", "4be73d68f433"
H, W = 230, 250
WriteWsi = Callable[..., Path]  # the write_wsi fixture (tests/io/conftest.py)
GBR = [{"OpticalPathIdentifier": name} for name in ("Green", "Blue", "Red")]


def _grey(dsb2018: Path, prefix: str) -> np.ndarray:
    with Image.open(dsb2018 / f"{prefix}_image.png") as img:
        return np.asarray(img.convert("L"))[:H, :W].copy()


@pytest.fixture(scope="module")
def fields(dsb2018: Path) -> dict[str, np.ndarray]:
    out = {"nuclei": _grey(dsb2018, NUCLEI), "other": _grey(dsb2018, OTHER)}
    out["third"] = _grey(dsb2018, THIRD)
    for a, b in [("nuclei", "other"), ("nuclei", "third"), ("other", "third")]:
        assert np.abs(out[a].astype(int) - out[b]).mean() > 5  # the channels differ
    return out


@pytest.fixture(scope="module")
def gbr(fields: dict[str, np.ndarray]) -> np.ndarray:
    """(3 optical paths, 1 plane, h, w): Green, Blue (the nuclei), Red."""
    return np.stack([fields["other"], fields["nuclei"], fields["third"]])[:, None]


def _read(path: Path, **options: str | tuple[float, float] | None) -> np.ndarray:
    with open_slide(path, options=ReadOptions(**options)) as slide:  # type: ignore[arg-type]
        px = slide.read_region(0, 0, 0, *slide.dimensions)
    assert (px[:, :, 0] == px[:, :, 2]).all()  # grey repeated to RGB
    return px[:, :, 0]


# -- (d) optical paths ----------------------------------------------------------------------------
def test_blue_path_is_read_not_the_first(
    write_wsi: WriteWsi, tmp_path: Path, gbr: np.ndarray, fields: dict[str, np.ndarray]
) -> None:
    path = write_wsi(tmp_path / "gbr.dcm", gbr, optical_paths=GBR)
    with open_slide(path) as slide:
        assert [ch.name for ch in slide.channels] == ["Green", "Blue", "Red"]
        assert slide.read_notes["channel"] == "1: 'Blue'"
        assert slide.read_notes["channel_rule"] == "named blue"
        assert slide.dims == {"z": 1, "t": 1, "c": 3}
    np.testing.assert_array_equal(_read(path), fields["nuclei"])


@pytest.mark.parametrize(
    ("choice", "field"), [("Red", "third"), ("0", "other"), ("blue", "nuclei")]
)
def test_channel_override(
    write_wsi: WriteWsi,
    tmp_path: Path,
    gbr: np.ndarray,
    fields: dict[str, np.ndarray],
    choice: str,
    field: str,
) -> None:
    path = write_wsi(tmp_path / "gbr.dcm", gbr, optical_paths=GBR)
    np.testing.assert_array_equal(_read(path, channel=choice), fields[field])


def test_undecidable_paths_are_refused(
    write_wsi: WriteWsi, tmp_path: Path, gbr: np.ndarray
) -> None:
    paths = [{"OpticalPathIdentifier": name} for name in "ABC"]
    path = write_wsi(tmp_path / "abc.dcm", gbr, optical_paths=paths)
    with pytest.raises(SlideFormatError) as err:
        open_slide(path)
    assert str(err.value).startswith(f"{path}: 3 channels (0: 'A'; 1: 'B'; 2: 'C')")
    assert "pass --channel NAME|INDEX" in str(err.value)
    with open_slide(path, options=ReadOptions(channel="B")) as slide:
        assert slide.read_notes["channel_rule"] == "--channel"


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"IlluminationWaveLength": [488.0, 405.0, 561.0]}, "UV/violet excitation"),
        ({"ImagePathFilterPassBand": [[500, 550], [435, 485], [570, 640]]}, "blue emission"),
        ({"OpticalPathDescription": ["Phalloidin", "Hoechst 33342", "MitoTracker"]}, "named"),
    ],
)
def test_path_chosen_by_what_the_file_records(
    write_wsi: WriteWsi,
    tmp_path: Path,
    gbr: np.ndarray,
    fields: dict[str, np.ndarray],
    extra: dict[str, list[object]],
    rule: str,
) -> None:
    paths = [{"OpticalPathIdentifier": name} for name in "ABC"]
    for key, values in extra.items():
        for spec, value in zip(paths, values, strict=True):
            spec[key] = value
    path = write_wsi(tmp_path / "abc.dcm", gbr, optical_paths=paths)
    with open_slide(path) as slide:
        assert slide.read_notes["channel"].startswith("1: 'B'")
        assert str(slide.read_notes["channel_rule"]).startswith(rule)
    np.testing.assert_array_equal(_read(path), fields["nuclei"])


def test_sparse_paths_by_per_frame_identification(
    write_wsi: WriteWsi, tmp_path: Path, gbr: np.ndarray, fields: dict[str, np.ndarray]
) -> None:
    n = 3 * 4 * 4  # 3 paths of 4 x 4 tiles
    order = np.random.default_rng(3).permutation(n).tolist()
    path = write_wsi(
        tmp_path / "sparse.dcm", gbr, optical_paths=GBR, layout="TILED_SPARSE", order=order
    )
    np.testing.assert_array_equal(_read(path), fields["nuclei"])
    np.testing.assert_array_equal(_read(path, channel="Green"), fields["other"])


def test_one_instance_per_path(
    write_wsi: WriteWsi, tmp_path: Path, gbr: np.ndarray, fields: dict[str, np.ndarray]
) -> None:
    """Fluorescence scanners often write each optical path as its own instance of one level."""
    series = generate_uid()
    for i, spec in enumerate(GBR):
        write_wsi(tmp_path / f"{i}.dcm", gbr[i : i + 1], optical_paths=[spec], series_uid=series)
    with open_slide(tmp_path) as slide:
        assert [ch.name for ch in slide.channels] == ["Green", "Blue", "Red"]
    np.testing.assert_array_equal(_read(tmp_path), fields["nuclei"])
    np.testing.assert_array_equal(_read(tmp_path, channel="Red"), fields["third"])


def test_brightfield_rgb_is_unaffected(cmu1_dicom: Path) -> None:
    with open_slide(cmu1_dicom, options=ReadOptions(channel="2")) as slide:
        assert slide.channels == () and slide.read_notes == {}
        px = slide.read_region(0, 1000, 1000, 64, 64)
    assert np.abs(px[:, :, 0].astype(int) - px[:, :, 2]).mean() > 10  # colour, not grey


# -- (f) focal planes -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(fields: dict[str, np.ndarray]) -> np.ndarray:
    """(1 path, 2 planes, h, w): the nuclei field and another field as plane 1."""
    return np.stack([fields["nuclei"], fields["other"]])[None]


@pytest.mark.parametrize("layout", ["TILED_FULL", "TILED_SPARSE"])
def test_focal_planes(write_wsi: WriteWsi, tmp_path: Path, stack: np.ndarray, layout: str) -> None:
    dapi = [{"OpticalPathIdentifier": "1", "OpticalPathDescription": "DAPI"}]
    order = np.random.default_rng(5).permutation(32).tolist() if layout == "TILED_SPARSE" else None
    path = write_wsi(
        tmp_path / "z.dcm", stack, optical_paths=dapi, layout=layout, order=order, z_um=[0.0, 1.5]
    )
    with pytest.raises(SlideFormatError, match=r"z\.dcm: 2 focal planes; pass --z INDEX"):
        open_slide(path)
    with pytest.raises(SlideFormatError, match=r"--z 2: the slide has 2 focal planes"):
        open_slide(path, options=ReadOptions(z="2"))
    np.testing.assert_array_equal(_read(path, z="0"), stack[0, 0])
    np.testing.assert_array_equal(_read(path, z="1"), stack[0, 1])
    np.testing.assert_array_equal(_read(path, z="max"), stack[0].max(axis=0))
    with open_slide(path, options=ReadOptions(z="max")) as slide:
        assert slide.read_notes["z"] == "max projection" and slide.dims["z"] == 2


def test_per_tile_autofocus_z_is_one_plane(
    write_wsi: WriteWsi, tmp_path: Path, fields: dict[str, np.ndarray]
) -> None:
    """Scanners record each tile's own autofocus Z: 16 tiles at 16 Z offsets are one plane."""
    path = write_wsi(tmp_path / "a.dcm", fields["nuclei"][None, None], layout="TILED_SPARSE")
    ds = pydicom.dcmread(path)
    focus = np.random.default_rng(7).uniform(-2.0, 2.0, 16)
    for item, z in zip(ds.PerFrameFunctionalGroupsSequence, focus, strict=True):
        item.PlanePositionSlideSequence[0].ZOffsetInSlideCoordinateSystem = round(float(z), 4)
    ds.save_as(path)
    with open_slide(path) as slide:
        assert slide.dims["z"] == 1 and "z" not in slide.read_notes
    np.testing.assert_array_equal(_read(path), fields["nuclei"])


def test_one_instance_per_plane(write_wsi: WriteWsi, tmp_path: Path, stack: np.ndarray) -> None:
    series = generate_uid()
    for z, z_um in enumerate([3.0, -1.0]):  # plane 0 is the lower Z: the first file is plane 1
        write_wsi(
            tmp_path / f"{z}.dcm",
            stack[:, z : z + 1],
            layout="TILED_SPARSE",
            z_um=[z_um],
            series_uid=series,
        )
    with pytest.raises(SlideFormatError, match="2 focal planes"):
        open_slide(tmp_path)
    np.testing.assert_array_equal(_read(tmp_path, z="0"), stack[0, 1])
    np.testing.assert_array_equal(_read(tmp_path, z="1"), stack[0, 0])


def test_paths_and_planes_index_the_right_frames(
    write_wsi: WriteWsi, tmp_path: Path, fields: dict[str, np.ndarray]
) -> None:
    """TILED_FULL frame = ((path * planes + plane) * rows + row) * cols + col: 3 paths x 2
    planes, every (path, plane) a different real field or a flip of one."""
    f = fields
    image = np.stack(
        [
            np.stack([f["other"], f["third"]]),
            np.stack([f["nuclei"], f["nuclei"][::-1].copy()]),
            np.stack([f["third"][:, ::-1].copy(), f["other"][::-1].copy()]),
        ]
    )
    path = write_wsi(tmp_path / "pz.dcm", image, optical_paths=GBR)
    for c, name in enumerate(["Green", "Blue", "Red"]):
        for z in (0, 1):
            np.testing.assert_array_equal(_read(path, channel=name, z=str(z)), image[c, z])


# -- (e) more than 8 bits -------------------------------------------------------------------------
def _notes_have(notes: dict[str, object], window: tuple[float, float], source: str) -> bool:
    return notes.items() >= describe(window, source).items()


@pytest.fixture(scope="module")
def dim(fields: dict[str, np.ndarray]) -> np.ndarray:
    """The nuclei field scaled to 0-235 (1 path, 1 plane)."""
    v = np.rint(fields["nuclei"].astype(np.float64) * 235 / fields["nuclei"].max())
    assert v.max() == 235
    return v.astype(np.uint8)[None, None]


def test_16_bit_reads_as_its_8_bit_copy(
    write_wsi: WriteWsi, tmp_path: Path, dim: np.ndarray
) -> None:
    """16-bit samples storing 8 bits (BitsStored 8, values 0-235) read exactly as the 8-bit
    file: the window is the declared bit depth, 0-255."""
    eight = write_wsi(tmp_path / "8" / "a.dcm", dim)
    sixteen = write_wsi(tmp_path / "16" / "a.dcm", dim.astype(np.uint16), bits_stored=8)
    with open_slide(sixteen) as slide:
        assert slide.bit_depth == 8
        assert _notes_have(slide.read_notes, (0.0, 255.0), "rule: DICOM BitsStored 8")
    np.testing.assert_array_equal(_read(sixteen), _read(eight))
    np.testing.assert_array_equal(_read(eight), dim[0, 0])


def test_16_bit_window_is_the_declared_depth(
    write_wsi: WriteWsi, tmp_path: Path, dim: np.ndarray
) -> None:
    """BitsStored 12 maps 4095 to 255, whatever the slide's own values (tile = whole)."""
    v12 = dim.astype(np.uint16) * 16  # 0-3760 of 4095
    path = write_wsi(tmp_path / "a.dcm", v12, bits_stored=12)
    with open_slide(path) as slide:
        assert slide.bit_depth == 12
        assert _notes_have(slide.read_notes, (0.0, 4095.0), "rule: DICOM BitsStored 12")
    expected = np.rint(v12[0, 0].astype(np.float64) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(_read(path), expected)


def test_intensity_range_override(write_wsi: WriteWsi, tmp_path: Path, dim: np.ndarray) -> None:
    path = write_wsi(tmp_path / "a.dcm", dim.astype(np.uint16))  # BitsStored 16
    px = _read(path, intensity=(0.0, 235.0))
    expected = np.rint(dim[0, 0].astype(np.float64) * 255 / 235).astype(np.uint8)
    assert np.abs(px.astype(int) - expected).max() <= 1  # float32 rounding
    assert px.max() == 255
    with open_slide(path, options=ReadOptions(intensity=(0.0, 235.0))) as slide:
        assert _notes_have(slide.read_notes, (0.0, 235.0), "--intensity-range")


def test_monochrome1_16_bit_is_inverted_in_its_range(
    write_wsi: WriteWsi, tmp_path: Path, dim: np.ndarray
) -> None:
    path = write_wsi(
        tmp_path / "a.dcm", dim.astype(np.uint16), bits_stored=8, photometric="MONOCHROME1"
    )
    np.testing.assert_array_equal(_read(path), 255 - dim[0, 0])


def test_tiles_a_sparse_fluorescence_file_lacks_are_dark_not_white(
    write_wsi: WriteWsi, tmp_path: Path, gbr: np.ndarray, fields: dict[str, np.ndarray]
) -> None:
    """A missing tile of a fluorescence slide is no signal (0); white would be a bright block
    of "nuclear stain" the network segments."""
    missing = {p * 16 + 1 * 4 + 1 for p in range(3)}  # tile (row 1, col 1) of every path
    order = [i for i in range(3 * 16) if i not in missing]
    path = write_wsi(
        tmp_path / "holes.dcm", gbr, optical_paths=GBR, layout="TILED_SPARSE", order=order
    )
    px = _read(path)
    assert (px[64:128, 64:128] == 0).all()
    expected = fields["nuclei"].copy()
    expected[64:128, 64:128] = 0
    np.testing.assert_array_equal(px, expected)
    with open_slide(path) as slide:  # and beyond the image, by default
        assert slide.background == 0
        assert (slide.read_region(0, -10, -10, 20, 20)[:10, :10] == 0).all()
