"""Planning a slide: pixel-size rules, analysis pixel size, tile store staleness, done-check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import zarr

from nucscale.config import Settings
from nucscale.errors import ConfigError, MissingPixelSizeError
from nucscale.infer import get_segmenter
from nucscale.pipeline import SlideInput, make_plan
from nucscale.pipeline._fragments import FORMAT as FRAGMENT_FORMAT
from nucscale.pipeline._plan import _prepare_work
from nucscale.pipeline._tasks import finished_with
from nucscale.store import create_label_image, nuclei_path, write_nuclei


def test_a_bioimageio_package_runs_at_the_given_pixel_size(
    bioimageio_unet: Path, cmu1_svs: Path, tmp_path: Path
) -> None:
    """No scale in the package: --analysis-mpp is its pixel size, and without one the plan is
    refused with the reason, never run at a guessed scale."""
    from nucscale.errors import SegmenterError
    from nucscale.pipeline._plan import analysis_mpp, build_segmenter

    asked = Settings(segmenter="bioimageio", weights=str(bioimageio_unet))
    with pytest.raises(SegmenterError, match=r"bioimageio\.yaml: .*pass --analysis-mpp"):
        analysis_mpp(asked)
    with pytest.raises(SegmenterError, match=r"pass --analysis-mpp"):
        make_plan(SlideInput(str(cmu1_svs), "s"), asked, str(tmp_path), "k")
    given = replace(asked, mpp=0.5, weights_format="torchscript")
    assert analysis_mpp(given) == 0.5
    seg, params = build_segmenter(given, 0.499, "brightfield")
    assert dict(params) == {
        "weights": str(bioimageio_unet),
        "weights_format": "torchscript",
        "modality": "brightfield",
        "mpp": 0.499,
    }
    assert seg.native_mpp == 0.499 and seg.describe()["weights_format"] == "torchscript"
    with pytest.raises(ConfigError, match="--weights-format applies to --model bioimageio"):
        build_segmenter(Settings(segmenter="unet", weights_format="onnx"), 0.5)


def test_cli_mpp_is_only_a_fallback(
    cmu1_svs: Path, openslide_fixtures: Path, tmp_path: Path
) -> None:
    svs = make_plan(SlideInput(str(cmu1_svs), "svs", None, 0.25), Settings(), str(tmp_path), "k")
    assert svs.mpp0 == pytest.approx(0.499)  # the file's own value wins over --mpp
    png = SlideInput(str(openslide_fixtures / "boxes.png"), "png", None, 0.5)
    assert make_plan(png, Settings(), str(tmp_path), "k").mpp0 == 0.5
    forced = SlideInput(str(cmu1_svs), "forced", 0.25, None)  # CSV mpp column: an override
    assert make_plan(forced, Settings(), str(tmp_path), "k").mpp0 == 0.25
    with pytest.raises(MissingPixelSizeError, match=r"boxes\.png: no pixel size"):
        make_plan(SlideInput(png.path, "png2"), Settings(), str(tmp_path), "k")


def test_segmenter_is_built_at_the_analysis_pixel_size(cmu1_svs: Path, tmp_path: Path) -> None:
    plan = make_plan(
        SlideInput(str(cmu1_svs), "s"), Settings(segmenter="baseline", mpp=1.0), str(tmp_path), "k"
    )
    assert plan.choice.factor == pytest.approx(1.0 / 0.499)
    assert plan.choice.width == round(2220 * 0.499)
    assert dict(plan.segmenter_params) == {"mpp": 1.0}
    at_1um = get_segmenter("baseline", mpp=1.0)
    at_half = get_segmenter("baseline", mpp=0.5)
    assert plan.grid.halo == at_1um.min_halo < at_half.min_halo  # same µm, fewer pixels
    assert plan.scale == pytest.approx(1.0 / 0.499)
    assert dict(plan.provenance)["segmenter"] == "baseline"
    assert "calibration.threshold" in dict(plan.provenance)


def test_tile_defaults_to_the_segmenters_own(cmu1_svs: Path, tmp_path: Path) -> None:
    """Networks get 2048 px tiles (less of their work on the halo), the baseline 1024 px; an
    explicit --tile wins."""
    inp = SlideInput(str(cmu1_svs), "s")
    unet = make_plan(inp, Settings(segmenter="unet"), str(tmp_path), "k")
    assert (unet.grid.tile, unet.grid.halo) == (2048, unet.segmenter_instance().min_halo)
    assert make_plan(inp, Settings(segmenter="baseline"), str(tmp_path), "k").grid.tile == 1024
    assert make_plan(inp, Settings(segmenter="unet", tile=512), str(tmp_path), "k").grid.tile == 512


def test_too_small_halo_is_refused(cmu1_svs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too small"):
        make_plan(SlideInput(str(cmu1_svs), "s"), Settings(halo=5), str(tmp_path), "k")


def test_tile_store_is_rebuilt_when_the_tissue_tiles_change(cmu1_svs: Path, tmp_path: Path) -> None:
    inp = SlideInput(str(cmu1_svs), "s")
    plan = make_plan(inp, Settings(tile=512), str(tmp_path), "k")
    arr = zarr.open_array(str(plan.tile_store), mode="r+")
    arr[0:512, 0:512, :] = 7  # pretend tile (0, 0) was ingested
    again = make_plan(inp, Settings(tile=512), str(tmp_path), "k2")
    assert zarr.open_array(str(again.tile_store), mode="r")[0, 0, 0] == 7  # same tissue: reused
    fewer = replace(plan, tiles=plan.tiles[-1:])  # e.g. another tissue detector setting
    assert (0, 0) not in fewer.ingest_tiles()
    _prepare_work(fewer)
    assert zarr.open_array(str(fewer.tile_store), mode="r")[0, 0, 0] == 255  # rebuilt, white


def test_fragments_of_another_geometry_are_not_resumed(cmu1_svs: Path, tmp_path: Path) -> None:
    """Same settings key, other tiling or segmenter geometry or fragment layout (a development
    build changed the halo, the patch size or the fragments without a new version): the
    scratch fragments are dropped, not stitched beside new tiles; the same geometry keeps
    them for a resume."""
    plan = make_plan(SlideInput(str(cmu1_svs), "s"), Settings(), str(tmp_path), "k")
    marker = plan.fragments / "geometry.json"
    assert '"halo": 256' in marker.read_text() and '"patch_output": "512"' in marker.read_text()
    stale = plan.fragments / "0_0.parquet"
    stale.write_bytes(b"fragment")
    _prepare_work(plan)
    assert stale.read_bytes() == b"fragment"  # same geometry: kept for the resume
    _prepare_work(replace(plan, grid=replace(plan.grid, halo=288)))
    assert not stale.exists() and '"halo": 288' in marker.read_text()
    stale.write_bytes(b"fragment")
    marker.unlink()  # scratch from a version that recorded no geometry
    _prepare_work(plan)
    assert not stale.exists() and '"halo": 256' in marker.read_text()
    # fragments of another layout (e.g. int64 ids before the int32 ranks) are never read
    assert f'"fragments": "{FRAGMENT_FORMAT}"' in marker.read_text()
    marker.write_text(marker.read_text().replace(FRAGMENT_FORMAT, "ids-int64-blosc-zstd"))
    stale.write_bytes(b"fragment")
    _prepare_work(plan)
    assert not stale.exists() and FRAGMENT_FORMAT in marker.read_text()


def test_finished_with_checks_the_settings_key(tmp_path: Path) -> None:
    table = nuclei_path(tmp_path, "s")
    labels = tmp_path / "labels" / "s.zarr"
    assert not finished_with(table, labels, "k1")
    write_nuclei(table, [], {"settings_key": "k1"})
    create_label_image(labels, (4, 4), 4, {"settings_key": "k1"})
    assert finished_with(table, labels, "k1")
    assert not finished_with(table, labels, "k2")  # written by another file or settings
    create_label_image(labels, (4, 4), 4, {"settings_key": "k0"})  # labels of an older run
    assert not finished_with(table, labels, "k1")
    create_label_image(labels, (4, 4), 4, {"settings_key": "k1"})
    table.write_bytes(b"not parquet")
    assert not finished_with(table, labels, "k1")


def test_a_folder_slide_changes_its_key_when_a_file_inside_changes(tmp_path: Path) -> None:
    """A chunk of an OME-Zarr store (or a DICOM file of a series) rewritten in place leaves the
    folder's own time as it was; the settings key must still change, or resume reuses stale
    nuclei."""
    import os

    from nucscale.pipeline._plan import settings_key

    store = tmp_path / "slide.ome.zarr"
    (store / "0" / "c").mkdir(parents=True)
    chunk = store / "0" / "c" / "0"
    chunk.write_bytes(b"a" * 10)
    folder_time = os.stat(store).st_mtime_ns
    inp, cfg = SlideInput(str(store), "slide"), Settings()
    before = settings_key(inp, cfg)
    assert settings_key(inp, cfg) == before
    chunk.write_bytes(b"b" * 12)
    os.utime(chunk, ns=(folder_time + 10**9, folder_time + 10**9))
    assert os.stat(store).st_mtime_ns == folder_time
    assert settings_key(inp, cfg) != before


def test_new_columns_make_a_finished_slide_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A development build keeps its version while columns are added: the key follows the
    tables' columns, so a slide finished without them is computed again."""
    import pyarrow as pa

    from nucscale.features import _cellprofiler
    from nucscale.pipeline._plan import settings_key

    slide = tmp_path / "s.tif"
    slide.write_bytes(b"x")
    inp = SlideInput(str(slide), "s")
    full, plain = Settings(features="full"), Settings()
    before_full, before_plain = settings_key(inp, full), settings_key(inp, plain)
    grown = _cellprofiler.FULL_SCHEMA.append(pa.field("new_measure", pa.float64()))
    monkeypatch.setattr(_cellprofiler, "FULL_SCHEMA", grown)
    assert settings_key(inp, full) != before_full
    assert settings_key(inp, plain) == before_plain  # no features table: not concerned


@pytest.mark.parametrize(
    ("field", "machine", "here", "elsewhere", "attr"),
    [
        ("cpu_precision", "native_bf16", "bfloat16", "float32", "precision"),
        ("cpu_runtime", "openvino_installed", "openvino", "torch", "runtime"),
    ],
)
def test_the_plan_fixes_the_slides_cpu_arithmetic(
    cmu1_svs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    machine: str,
    here: str,
    elsewhere: str,
    attr: str,
) -> None:
    """``auto`` (bfloat16 where the CPU computes it; OpenVINO where installed) is resolved
    once, by the plan, into the parameters every forward task builds the network from; it is
    in the provenance and the geometry, so fragments and maps of the other precision or
    runtime are never resumed beside new ones."""
    from nucscale.infer import _precision

    inp = SlideInput(str(cmu1_svs), "s")
    monkeypatch.setattr(_precision, machine, lambda: True)
    plan = make_plan(inp, Settings(), str(tmp_path), "k")
    assert dict(plan.segmenter_params)[field] == here
    assert dict(plan.provenance)[field].startswith(here)  # "openvino 2026.4.1"
    stale = plan.fragments / "0_0.parquet"
    stale.write_bytes(b"fragment")
    monkeypatch.setattr(_precision, machine, lambda: False)
    other = make_plan(inp, Settings(), str(tmp_path), "k")  # same key, another machine
    assert dict(other.segmenter_params)[field] == elsewhere
    assert other.fragments == plan.fragments and not stale.exists()
    assert f'"{field}": "{elsewhere}"' in (other.fragments / "geometry.json").read_text()
    monkeypatch.undo()
    forced = make_plan(inp, Settings(**{field: elsewhere}), str(tmp_path), "k2")
    assert getattr(forced.segmenter_instance(), attr) == elsewhere
    flag = "--" + field.replace("_", "-")
    takers = "unet" if field == "cpu_precision" else "unet or hovernet"
    with pytest.raises(ConfigError, match=f"{flag} applies to --model {takers}, not .baseline."):
        make_plan(inp, Settings(segmenter="baseline", **{field: elsewhere}), str(tmp_path), "b")
    with pytest.raises(ConfigError, match=f"{field.replace('_', ' ')} must be one of auto, "):
        Settings(**{field: "fp16"})
