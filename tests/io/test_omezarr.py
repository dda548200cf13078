"""OME-Zarr reader: NGFF 0.4 and 0.5, bioformats2raw layout, channels, bit depth, Z/T, units.

Every store is written in tmp_path from real pixels: the CMU-1 H&E region and DSB 2018
fluorescence fields (../shared/data).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

from nucscale.cli import app
from nucscale.errors import SlideFormatError, SlideReadError
from nucscale.io import ReadOptions, open_slide, read_region_cached, slide_info
from nucscale.io import _omezarr as omezarr
from nucscale.io._open import sniff
from nucscale.io._synthetic_omezarr import pyramid, write_omezarr, write_rgb_omezarr
from nucscale.store._omezarr import create_label_image, finish_label_image, write_image


@pytest.fixture(scope="module")
def fields(dsb2018: Path) -> list[np.ndarray]:
    """Three real DSB 2018 fluorescence fields of 256 x 256 px, grey uint8."""
    out = []
    for entry in json.loads((dsb2018 / "index.json").read_text()):
        if entry["modality"] == "fluorescence" and (entry["height"], entry["width"]) == (256, 256):
            rgb = np.asarray(Image.open(dsb2018 / f"{entry['file_prefix']}_image.png"))
            out.append(np.ascontiguousarray(rgb[:, :, 0]))
        if len(out) == 3:
            return out
    pytest.fail("fewer than three 256 x 256 fluorescence fields in dsb2018-dev")


def _grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


# -- brightfield RGB -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("layout", ["image", "bioformats2raw"])
def test_rgb_store_reads_back_exactly(
    cmu1_region: np.ndarray, tmp_path: Path, version: str, layout: str
) -> None:
    path = write_rgb_omezarr(
        cmu1_region, tmp_path / "cmu1.ome.zarr", mpp=0.499, version=version, levels=3,
        chunk=128, layout=layout,
    )  # fmt: skip
    marker = ".zattrs" if version == "0.4" else "zarr.json"
    assert (path / marker).is_file()
    assert sniff(path) == "omezarr"
    with open_slide(path) as s:
        assert s.backend == "ome-zarr"
        assert s.mpp == pytest.approx(0.499)
        assert s.level_dimensions == ((640, 480), (320, 240), (160, 120))
        assert s.level_downsamples == (1.0, 2.0, 4.0)
        assert np.array_equal(s.read_region(0, 0, 0, 640, 480), cmu1_region)
        level1 = np.moveaxis(pyramid(np.moveaxis(cmu1_region, -1, 0), "cyx", 2)[1], 0, -1)
        assert np.array_equal(s.read_region(1, 0, 0, 320, 240), level1)
        # padding outside the image is white, from the base class
        edge = s.read_region(0, 600, 440, 80, 80)
        assert np.array_equal(edge[:40, :40], cmu1_region[440:, 600:])
        assert (edge[40:] == 255).all() and (edge[:, 40:] == 255).all()
        assert s.dims == {"t": 1, "c": 3, "z": 1}
        assert s.bit_depth == 8
        assert s.read_notes["channel"] == "RGB (0, 1, 2)"
        assert s.read_notes["channel_rule"] == "omero colours FF0000, 00FF00, 0000FF"
        assert s.read_notes["ngff_version"] == version
        if layout == "bioformats2raw":
            assert s.read_notes["series"] == "0"
            assert s.read_notes["series_count"] == 1
            assert s.dims == {"t": 1, "c": 3, "z": 1}
        info = slide_info(s)
    assert json.loads(json.dumps(info))["backend"] == "ome-zarr"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("series_list", [True, False])
def test_bioformats2raw_reads_series_0_of_several(
    cmu1_region: np.ndarray, tmp_path: Path, version: str, series_list: bool
) -> None:
    data = np.moveaxis(cmu1_region, -1, 0)[None, :, None]
    path = write_omezarr(
        data, tmp_path / "bf2raw.ome.zarr", "tczyx", version=version, mpp=0.499,
        colors=("FF0000", "00FF00", "0000FF"), layout="bioformats2raw", series=3,
        series_list=series_list,
    )  # fmt: skip
    with open_slide(path) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 640, 480), cmu1_region)  # not flipped
        assert s.read_notes["series"] == "0"
        assert s.read_notes["series_count"] == 3
        assert s.read_notes["series_rule"] == "bioformats2raw layout: the first of 3 series"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_store_written_by_ome_zarr_py(
    cmu1_region: np.ndarray, tmp_path: Path, version: str
) -> None:
    with warnings.catch_warnings():  # ome-zarr-py deprecates its own Scaler at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_image as ome_write_image

        fmt = FormatV04() if version == "0.4" else FormatV05()
        group = zarr.open_group(str(tmp_path / "ozp.zarr"), mode="w", zarr_format=fmt.zarr_format)
        window = {"start": 0, "end": 255, "min": 0, "max": 255}
        colours = zip("RGB", ("FF0000", "00FF00", "0000FF"), strict=True)
        ome_write_image(
            np.moveaxis(cmu1_region, -1, 0), group, fmt=fmt, axes="cyx", scale_factors=(2, 4),
            scale={"c": 1.0, "y": 0.5, "x": 0.5}, axes_units={"y": "micrometer", "x": "micrometer"},
            storage_options={"chunks": (1, 128, 128)},
            omero={"channels": [{"label": c, "color": k, "window": window} for c, k in colours]},
        )  # fmt: skip
    with open_slide(tmp_path / "ozp.zarr") as s:
        assert s.mpp == pytest.approx(0.5)
        assert s.level_downsamples == (1.0, 2.0, 4.0)  # paths s0, s1, s2; translations ignored
        assert np.array_equal(s.read_region(0, 0, 0, 640, 480), cmu1_region)
        assert s.read_notes["ngff_version"] == version


def test_save_image_output_reads_back_and_labels_are_refused(
    cmu1_region: np.ndarray, tmp_path: Path
) -> None:
    src = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=cmu1_region.shape, chunks=(256, 256, 3),
        dtype="uint8",
    )  # fmt: skip
    src[...] = cmu1_region
    images = tmp_path / "images" / "cmu1.zarr"
    assert write_image(images, src, 0.5, "cmu1") == 1
    with open_slide(images) as s:
        assert s.mpp == pytest.approx(0.5)
        assert np.array_equal(s.read_region(0, 0, 0, 640, 480), cmu1_region)
        assert s.read_notes["channel"] == "RGB (0, 1, 2)"
    labels = tmp_path / "labels" / "cmu1.zarr"
    create_label_image(labels, (480, 640), 256, {})
    finish_label_image(labels, 0.5, "../../images/cmu1.zarr")
    with pytest.raises(SlideFormatError, match="a label image"):
        open_slide(labels)


# -- fluorescence channels -----------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_fluorescence_reads_the_channel_named_dapi(
    fields: list[np.ndarray], tmp_path: Path, version: str
) -> None:
    dapi, actin, other = fields
    stack = np.stack([actin, dapi, other])
    # coloured red, green, blue in that order: DAPI's name must win over the colours
    path = write_omezarr(
        stack, tmp_path / "fl.zarr", "cyx", version=version, mpp=0.65,
        channels=["Phalloidin", "DAPI", "GFP"], colors=["FF0000", "00FF00", "0000FF"],
    )  # fmt: skip
    with open_slide(path) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(dapi))
        assert [c.name for c in s.channels] == ["Phalloidin", "DAPI", "GFP"]
        assert s.read_notes["channel"] == "1: 'DAPI'"
        assert s.read_notes["channel_rule"] == "named as a nuclear stain"
        assert s.dims == {"t": 1, "c": 3, "z": 1}


def test_undecidable_channels_are_refused_with_the_list(
    fields: list[np.ndarray], tmp_path: Path
) -> None:
    path = write_omezarr(np.stack(fields[:2]), tmp_path / "fl.zarr", channels=["ch-a", "ch-b"])
    with pytest.raises(SlideFormatError, match=r"0: 'ch-a'; 1: 'ch-b'.*--channel"):
        open_slide(path)
    for choice in ("ch-b", "1"):
        with open_slide(path, options=ReadOptions(channel=choice)) as s:
            assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[1]))
            assert s.read_notes["channel_rule"] == "--channel"
    # three unnamed uint8 channels without colours are not guessed to be RGB either
    unnamed = write_omezarr(np.stack(fields), tmp_path / "unnamed.zarr")
    with pytest.raises(SlideFormatError, match="3 channels"):
        open_slide(unnamed)


def test_rgb_by_names_or_rdefs_and_channel_overrides(
    cmu1_region: np.ndarray, tmp_path: Path
) -> None:
    cyx = np.moveaxis(cmu1_region, -1, 0)
    named = write_omezarr(cyx, tmp_path / "named.zarr", channels=["red", "green", "blue"])
    rdefs = write_omezarr(cyx, tmp_path / "rdefs.zarr", rdefs_model="color")
    for path, rule in ((named, "channels named R, G, B"), (rdefs, "model 'color'")):
        with open_slide(path) as s:
            assert rule in str(s.read_notes["channel_rule"])
            assert np.array_equal(s.read_region(0, 0, 0, 640, 480), cmu1_region)
    with open_slide(named, options=ReadOptions(channel="green")) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 640, 480), _grey3(cmu1_region[:, :, 1]))


def test_wavelengths_from_the_bioformats2raw_ome_xml(
    fields: list[np.ndarray], tmp_path: Path
) -> None:
    path = write_omezarr(
        np.stack(fields[:2])[None, :, None], tmp_path / "bf.zarr", "tczyx",
        layout="bioformats2raw", xml_names=["", ""], wavelengths=[(520, 488), (461, 358)],
    )  # fmt: skip
    with open_slide(path) as s:
        assert [(c.emission_nm, c.excitation_nm) for c in s.channels] == [(520, 488), (461, 358)]
        assert s.read_notes["channel_rule"] == "blue emission"
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[1]))


# -- bit depth -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factor", "window"), [(1, [0.0, 255.0]), (257, [0.0, 65535.0]), (16, [0.0, 4095.0])]
)
def test_uint16_by_one_window_per_slide(
    fields: list[np.ndarray], tmp_path: Path, factor: int, window: list[float]
) -> None:
    grey = fields[0]
    path = write_omezarr(
        (grey.astype(np.uint16) * factor)[None], tmp_path / "u16.zarr", channels=["DAPI"],
        levels=2, chunk=64,
    )  # fmt: skip
    with open_slide(path) as s:
        assert s.bit_depth == 16
        assert s.read_notes["intensity_range"] == window
        got = s.read_region(0, 0, 0, 256, 256)[:, :, 0]
        if factor in (1, 257):  # exact: 0-255 is 8-bit data, x257 maps 65535 to 255
            assert np.array_equal(got, grey)
        else:  # 12-bit: 4080 of 4095 -> 254
            assert np.abs(got.astype(int) - grey).max() <= 1
    override = ReadOptions(intensity=(0, 128))
    with open_slide(path, options=override) as s:
        assert "--intensity-range" in s.read_notes.values()  # the source, whatever its key
        got = s.read_region(0, 0, 0, 256, 256)[:, :, 0]
        expect = np.rint(np.clip(grey.astype(np.float32) * factor / 128 * 255, 0, 255))
        assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1


def test_float_samples_by_the_lowest_level_percentiles(
    fields: list[np.ndarray], tmp_path: Path
) -> None:
    grey = fields[0].astype(np.float32) / 255
    path = write_omezarr(grey[None], tmp_path / "f.zarr", channels=["DAPI"], levels=2)
    low = pyramid(grey[None], "cyx", 2)[1]
    lo, hi = np.percentile(low, (0.1, 99.9))
    with open_slide(path) as s:
        assert s.bit_depth == "float32"
        assert s.read_notes["intensity_range"] == pytest.approx([lo, hi])
        got = s.read_region(0, 0, 0, 256, 256)[:, :, 0]
    expect = np.rint(np.clip((grey - lo) / (hi - lo), 0, 1) * 255)
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1


def test_a_big_lowest_level_is_sampled_by_chunks(
    fields: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(omezarr, "SAMPLE_PIXELS", 128 * 128)
    data = (fields[0].astype(np.uint16) * 16)[None]
    data[0, 200, 200] = 60000  # a hot pixel in a chunk the sample skips does not count
    path = write_omezarr(data, tmp_path / "big.zarr", channels=["DAPI"], chunk=64)
    with open_slide(path) as s:
        assert s.read_notes["intensity_range"] == [0.0, 4095.0]
        assert "one chunk in 2 across and down" in str(s.read_notes.values())


# -- Z and T -------------------------------------------------------------------------------------
def test_z_stack_needs_a_choice(fields: list[np.ndarray], tmp_path: Path) -> None:
    zyx = np.stack(fields)
    path = write_omezarr(zyx[None], tmp_path / "z.zarr", "czyx", channels=["Hoechst"])
    with pytest.raises(
        SlideFormatError, match=r"z\.zarr: 3 focal planes; pass --z INDEX or --z max$"
    ):
        open_slide(path)
    with open_slide(path, options=ReadOptions(z="1")) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[1]))
        assert (s.read_notes["z"], s.read_notes["z_rule"]) == (1, "--z")
        assert s.dims == {"t": 1, "c": 1, "z": 3}
    with open_slide(path, options=ReadOptions(z="max")) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(zyx.max(axis=0)))
        assert s.read_notes["z"] == "max projection"
    # the Dask path opens the slide by path and options, and sees the same projection
    got = read_region_cached(str(path), 0, 10, 20, 100, 50, ReadOptions(z="max"))
    assert np.array_equal(got, _grey3(zyx.max(axis=0)[20:70, 10:110]))
    with pytest.raises(SlideFormatError, match="--z 3: the image has 3 focal plane"):
        open_slide(path, options=ReadOptions(z="3"))


def test_time_series_is_refused(fields: list[np.ndarray], tmp_path: Path) -> None:
    path = write_omezarr(np.stack(fields[:2])[:, None], tmp_path / "t.zarr", "tcyx")
    with pytest.raises(SlideFormatError, match="2 time points; nucscale reads one time point"):
        open_slide(path)


# -- pixel size and levels -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("unit", "size", "mpp"),
    [
        ("micrometer", 0.499, 0.499),
        ("nanometer", 499.0, 0.499),
        ("millimeter", 0.000499, 0.499),
        (None, 0.499, None),
        ("parsec", 0.499, None),
    ],
)
def test_pixel_size_from_scale_and_unit(
    fields: list[np.ndarray], tmp_path: Path, unit: str | None, size: float, mpp: float | None
) -> None:
    path = write_omezarr(fields[0][None], tmp_path / "u.zarr", mpp=size, unit=unit, levels=2)
    with open_slide(path) as s:
        assert s.mpp == (None if mpp is None else pytest.approx(mpp))
        assert s.level_downsamples == (1.0, 2.0)
        if mpp is None:
            assert "pass --mpp" in str(s.read_notes["pixel_size"])
    with open_slide(path, mpp=0.25) as s:
        assert s.mpp == 0.25


def test_a_level_contradicting_its_scale_is_not_used(
    fields: list[np.ndarray], tmp_path: Path
) -> None:
    path = write_omezarr(fields[0][None], tmp_path / "bad.zarr", levels=3, version="0.4")
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [1, 4, 4]
    (path / ".zattrs").write_text(json.dumps(attrs))
    with open_slide(path) as s:
        assert s.level_dimensions == ((256, 256), (64, 64))
        assert s.read_notes["levels_ignored"][0]["path"] == "1"


def test_axes_by_declaration(fields: list[np.ndarray], tmp_path: Path) -> None:
    zyx = np.stack(fields)
    path = write_omezarr(zyx[None], tmp_path / "a.zarr", "czyx", version="0.4", channels=["DNA"])
    attrs = json.loads((path / ".zattrs").read_text())
    axes = attrs["multiscales"][0]["axes"]
    for axis in axes:  # untyped axes (valid 0.4) are placed by their names
        axis.pop("type")
    (path / ".zattrs").write_text(json.dumps(attrs))
    with open_slide(path, options=ReadOptions(z="2")) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[2]))
    axes[0] = {"name": "angle", "type": "rotation"}  # a custom axis of one entry is read at 0
    (path / ".zattrs").write_text(json.dumps(attrs))
    with open_slide(path, options=ReadOptions(z="2")) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[2]))
        assert s.dims == {"t": 1, "c": 1, "z": 3}
    axes[0], axes[1] = {"name": "z", "type": "space"}, {"name": "angle", "type": "rotation"}
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(SlideFormatError, match=r"axis 'angle' .* has 3 entries"):
        open_slide(path)


def test_a_pyramid_that_also_halves_z_keeps_level_0_only(
    fields: list[np.ndarray], tmp_path: Path
) -> None:
    zyx = np.stack([fields[0], fields[1], fields[2], fields[0]])
    path = write_omezarr(zyx, tmp_path / "z.zarr", "zyx", channels=None, levels=2)
    group = zarr.open_group(str(path), mode="r+")
    del group["1"]
    group.create_array("1", data=zyx[::2, ::2, ::2], chunks=(1, 128, 128))
    with open_slide(path, options=ReadOptions(z="1")) as s:
        assert s.level_dimensions == ((256, 256),)  # level 1's plane 1 is not level 0's
        assert "changes t, c or z" in str(s.read_notes["levels_ignored"])
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), _grey3(fields[1]))


def test_regions_decode_only_the_chunks_they_touch(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    path = write_rgb_omezarr(cmu1_region, tmp_path / "lazy.zarr", chunk=128)
    for c in range(3):  # corrupt the bottom-right chunk of every channel
        (path / "0" / "c" / str(c) / "3" / "4").write_bytes(b"not a chunk")
    with open_slide(path) as s:
        assert np.array_equal(s.read_region(0, 0, 0, 256, 256), cmu1_region[:256, :256])
        with pytest.raises(SlideReadError, match=r"cannot decode level 0 region at \(600, 400\)"):
            s.read_region(0, 600, 400, 40, 80)


# -- what is not an OME-Zarr image ---------------------------------------------------------------
def test_other_zarr_content_is_refused_with_the_reason(
    fields: list[np.ndarray], tmp_path: Path, cmu1_dicom: Path
) -> None:
    assert sniff(cmu1_dicom) == "dicom"
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_array("x", shape=(4, 4), dtype="uint8")
    with pytest.raises(SlideFormatError, match="without OME-Zarr 'multiscales'"):
        open_slide(tmp_path / "plain.zarr")
    path = write_omezarr(fields[0][None], tmp_path / "img.zarr")
    with pytest.raises(SlideFormatError, match="Zarr array, not an OME-Zarr image"):
        open_slide(path / "0")
    plate = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w")
    plate.attrs["ome"] = {"version": "0.5", "plate": {"wells": [{"path": "A/1"}]}}
    with pytest.raises(SlideFormatError, match="an HCS plate; nucscale reads one image"):
        open_slide(tmp_path / "plate.zarr")
    attrs = json.loads((path / "zarr.json").read_text())
    attrs["attributes"]["ome"]["version"] = "0.6"
    (path / "zarr.json").write_text(json.dumps(attrs))
    with pytest.raises(SlideFormatError, match=r"version 0\.6 is not supported"):
        open_slide(path)


def test_cli_info_on_an_omezarr(cmu1_region: np.ndarray, tmp_path: Path) -> None:
    path = write_rgb_omezarr(cmu1_region, tmp_path / "cmu1.ome.zarr", mpp=0.499, levels=2)
    res = CliRunner().invoke(app, ["info", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "backend: ome-zarr" in res.output
    assert "0.499 µm/px" in res.output
