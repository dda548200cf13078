"""The command line: `nucscale info`, argument errors of `nucscale run`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nucscale.cli import _info, _run, app  # noqa: F401 - registers the commands

runner = CliRunner()


def test_info_on_the_real_svs(cmu1_svs: Path) -> None:
    res = runner.invoke(app, ["info", str(cmu1_svs)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "backend: openslide" in res.output
    assert "vendor: aperio" in res.output
    assert "0.499 µm/px" in res.output
    assert "2220" in res.output and "2967" in res.output


def test_info_on_the_dicom_folder(cmu1_dicom: Path) -> None:
    res = runner.invoke(app, ["info", str(cmu1_dicom)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "backend: dicom" in res.output
    assert res.output.count("\n") > 12  # 12 levels listed


def test_info_on_a_missing_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["info", str(tmp_path / "nope.svs")])
    assert res.exit_code == 2
    assert "nope.svs" in res.output


def test_info_on_a_bioimageio_package(bioimageio_unet: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["info", str(bioimageio_unet)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "bioimage.io model package" in res.output and "UNet 2D Nuclei Broad" in res.output
    assert "bcyx, 1 channel(s), sizes 512 px" in res.output and "halo 32" in res.output
    assert "not declared (pass --analysis-mpp)" in res.output
    assert "ensure_dtype, zero_mean_unit_variance, ensure_dtype" in res.output
    assert "onnx (sha256 85f5ac80fa977fea3562ef97c8c5950288be2c4f4cdb5d994807df97008ce088)" in (
        res.output
    )
    bad = tmp_path / "bad.bioimageio.yaml"
    text = (bioimageio_unet / "bioimageio.yaml").read_text()
    bad.write_text(text.replace("id: zero_mean_unit_variance", "id: fancy_norm"))
    res = runner.invoke(app, ["info", str(bad)], env={"COLUMNS": "80"})
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0  # one line, however narrow the terminal
    assert f"{bad}: inputs[0].preprocessing[1]: unknown preprocessing op 'fancy_norm'" in (
        res.output
    )


def test_run_refuses_a_too_small_halo(cmu1_svs: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--halo", "3"],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 2
    assert "too small" in res.output
    assert not (tmp_path / "o").exists()


def test_run_with_an_empty_glob(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(tmp_path / "*.svs"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "matches no file" in res.output


def test_run_with_an_unknown_segmenter(cmu1_svs: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--segmenter", "nope"]
    )
    assert res.exit_code == 2
    assert "baseline" in res.output  # the error lists the known names


def test_gpu_flag_without_dask_cuda(cmu1_svs: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("dask_cuda") is not None:
        import pytest

        pytest.skip("dask-cuda is installed here; the error path needs it absent")
    res = runner.invoke(app, ["run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--gpu"])
    assert res.exit_code == 2
    assert "dask-cuda" in res.output


def test_info_names_channels_bit_depth_and_the_channel_read(dsb2018: Path, tmp_path: Path) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    grey = np.asarray(Image.open(dsb2018 / "519dc0d672d1_image.png").convert("L"))
    stack = np.stack([grey // 2, grey // 3, grey]).astype(np.uint16) * 33  # 12-bit camera
    meta = {"axes": "CYX", "Channel": {"Name": ["Actin", "WGA", "DAPI"]}}
    tifffile.imwrite(tmp_path / "three.ome.tif", stack, ome=True, metadata=meta)
    res = runner.invoke(app, ["info", str(tmp_path / "three.ome.tif")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "samples: 16 bit   dimensions: t=1  c=3  z=1" in res.output
    assert "Actin" in res.output and "WGA" in res.output
    assert "yes (named as a nuclear stain)" in res.output
    assert "intensity_range: [0.0, 4095.0]" in res.output
    args = ["info", str(tmp_path / "three.ome.tif"), "--channel", "WGA"]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "yes (--channel)" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "three.ome.tif"), "--z", "top"])
    assert res.exit_code == 2 and "--z takes a plane index" in res.output
