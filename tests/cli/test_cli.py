"""The command line: `nucscale info`, argument and input errors of `nucscale run`, --version."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from nucscale.cli import _info, _results, _run, app  # noqa: F401 - registers the commands
from nucscale.store import ManifestRow, write_manifest

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


def test_version() -> None:
    from nucscale import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output == f"nucscale {__version__}\n"


class _ClusterStarted(Exception):
    """Raised by the stand-in for get_client: the run got as far as starting a cluster."""


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise _ClusterStarted

    monkeypatch.setattr(_run, "get_client", refuse)


def _run_fast(*args: str) -> tuple[Result, float]:
    t0 = time.perf_counter()
    res = runner.invoke(app, ["run", *args, "--model", "baseline"], env={"COLUMNS": "80"})
    return res, time.perf_counter() - t0


@pytest.mark.usefixtures("no_cluster")
def test_run_refuses_an_unusable_input_at_once_in_one_line(
    openslide_fixtures: Path, tmp_path: Path
) -> None:
    """A mistyped path, a text file named .svs, a picture without a pixel size: one line, in
    under a second, no cluster, no output folder."""
    (tmp_path / "notes.svs").write_text("this is not a slide\n")
    (tmp_path / "boxes.png").write_bytes((openslide_fixtures / "boxes.png").read_bytes())
    out = tmp_path / "o"
    cases = {"missing.svs": "no such file", "notes.svs": "a text file", "boxes.png": "--mpp"}
    for name, reason in cases.items():
        res, seconds = _run_fast(str(tmp_path / name), "--out", str(out))
        assert res.exit_code == 2, (name, res.output)
        assert res.output.startswith(f"error: {tmp_path / name}: ") and reason in res.output
        assert res.output.count("\n") == 1, res.output  # one line, however narrow the terminal
        assert seconds < 1.0, (name, seconds)
        assert not out.exists()
    # none of several inputs usable: every reason, and that nothing ran
    res, _ = _run_fast(*(str(tmp_path / n) for n in cases), "--out", str(out))
    assert res.exit_code == 2
    lines = res.output.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    assert "none of the 3 inputs can be processed" in lines[-1] and not out.exists()


@pytest.mark.usefixtures("no_cluster")
def test_run_with_some_usable_inputs_starts_the_cluster(cmu1_svs: Path, tmp_path: Path) -> None:
    """One good slide among bad ones: the run goes ahead (the bad ones fail on the workers and
    are recorded in the manifest)."""
    res, _ = _run_fast(str(tmp_path / "missing.svs"), str(cmu1_svs), "--out", str(tmp_path / "o"))
    assert isinstance(res.exception, _ClusterStarted), res.output


@pytest.mark.usefixtures("no_cluster")
def test_run_refuses_an_out_that_cannot_be_a_folder(cmu1_svs: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("a file\n")
    for out, reason in ((readme, "exists and is not a folder"), (readme / "o", "is a file")):
        res, seconds = _run_fast(str(cmu1_svs), "--out", str(out))
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: {out}: ") and reason in res.output, res.output
        assert res.output.count("\n") == 1 and seconds < 1.0
    assert readme.read_text() == "a file\n"


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-0.25"])
def test_run_refuses_a_pixel_size_that_is_not_a_positive_number(
    cmu1_svs: Path, tmp_path: Path, value: str
) -> None:
    out = str(tmp_path / "o")
    for option in ("--mpp", "--analysis-mpp"):
        res, _ = _run_fast(str(cmu1_svs), "--out", out, option, value)
        assert res.exit_code == 2, (option, res.output)
        assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
        assert "positive number of µm per pixel" in res.output
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,mpp\n{cmu1_svs},{value}\n")
    res, _ = _run_fast(str(csv), "--out", out)
    assert res.exit_code == 2, res.output
    assert res.output == f"error: {csv} line 2: mpp '{value}' is not a positive number\n"
    assert not (tmp_path / "o").exists()


def test_query_says_0_rows_for_an_empty_result(tmp_path: Path) -> None:
    write_manifest(tmp_path, [ManifestRow("a", "/x/a.svs", "failed", error="/x/a.svs: empty")])
    res = runner.invoke(app, ["query", str(tmp_path), "SELECT slide_id FROM slides WHERE false"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("0 rows")
