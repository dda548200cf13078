"""The command line: `nucscale info`, argument and input errors of `nucscale run`, --version."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from nucscale.cli import _info, _results, _run, app  # noqa: F401 - registers the commands
from nucscale.store import ManifestRow, read_manifest, write_manifest

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


def test_gpu_flag_without_a_gpu(cmu1_svs: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("this machine has a GPU; the error path needs none")
    res = runner.invoke(app, ["run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--gpu"])
    assert res.exit_code == 2
    assert "torch sees no CUDA device" in res.output
    assert not (tmp_path / "o" / "manifest.json").exists()


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

    import nucscale.cluster

    monkeypatch.setattr(nucscale.cluster, "get_client", refuse)


def _run_fast(*args: str) -> Result:
    return runner.invoke(app, ["run", *args, "--model", "baseline"], env={"COLUMNS": "80"})


_HEAVY = ("distributed", "torch", "zarr", "pyarrow", "skimage", "nucscale.pipeline", "nucscale.io")


def _loaded_after(*args: str) -> tuple[int, list[str]]:
    """Run the CLI in a fresh interpreter; its exit code and which heavy modules it loaded."""
    code = (
        "import sys\nfrom nucscale.cli import main\n"
        f"sys.argv = ['nucscale', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
        f"print(rc, [m for m in {_HEAVY!r} if m in sys.modules])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rc, loaded = res.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(rc), ast.literal_eval(loaded)


def test_a_mistyped_path_is_refused_before_the_pipeline_loads(tmp_path: Path) -> None:
    """Dask, torch and the readers take seconds to import: a missing input, an --out that is
    a file or a bad --mpp fail before any of them loads (and --help and --version too)."""
    (tmp_path / "file").write_text("x")
    for args in (
        ["run", str(tmp_path / "missing.svs"), "--out", str(tmp_path / "o")],
        ["run", str(tmp_path / "file"), "--out", str(tmp_path / "file")],
        ["run", str(tmp_path / "file"), "--out", str(tmp_path / "o"), "--mpp", "nan"],
        ["run", "--help"],
        ["--version"],
    ):
        rc, loaded = _loaded_after(*args)
        assert rc in (0, 2) and loaded == [], (args, rc, loaded)
    assert not (tmp_path / "o").exists()


def test_the_command_runs_the_shipped_model_without_loading_torch(
    cmu1_svs: Path, tmp_path: Path
) -> None:
    """Only the workers run the network: the command's own process checks, plans and reports
    without torch (0.7 s and 0.19 GiB of it), unless it must load weights the user gave."""
    rc, loaded = _loaded_after("run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--workers", "1")
    assert rc == 0 and "torch" not in loaded and "distributed" in loaded, (rc, loaded)
    (row,) = read_manifest(tmp_path / "o").values()
    assert row.status == "done" and (row.nuclei or 0) > 1000, row
    # a halo to check needs the model's context: the command builds it (and refuses here)
    rc, loaded = _loaded_after("run", str(cmu1_svs), "--out", str(tmp_path / "p"), "--halo", "3")
    assert rc == 2 and "torch" in loaded and not (tmp_path / "p").exists(), (rc, loaded)


@pytest.mark.usefixtures("no_cluster")
def test_run_refuses_an_unusable_input_at_once_in_one_line(
    openslide_fixtures: Path, tmp_path: Path
) -> None:
    """A mistyped path, a text file named .svs, a picture without a pixel size: one line, no
    cluster, no output folder."""
    (tmp_path / "notes.svs").write_text("this is not a slide\n")
    (tmp_path / "boxes.png").write_bytes((openslide_fixtures / "boxes.png").read_bytes())
    out = tmp_path / "o"
    cases = {"missing.svs": "no such file", "notes.svs": "a text file", "boxes.png": "--mpp"}
    for name, reason in cases.items():
        res = _run_fast(str(tmp_path / name), "--out", str(out))
        assert res.exit_code == 2, (name, res.output)
        assert res.output.startswith(f"error: {tmp_path / name}: ") and reason in res.output
        assert res.output.count("\n") == 1, res.output  # one line, however narrow the terminal
        assert not out.exists()
    # none of several inputs usable: every reason, and that nothing ran
    res = _run_fast(*(str(tmp_path / n) for n in cases), "--out", str(out))
    assert res.exit_code == 2
    lines = res.output.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    assert "none of the 3 inputs can be processed" in lines[-1] and not out.exists()


@pytest.mark.usefixtures("no_cluster")
def test_run_with_some_usable_inputs_starts_the_cluster(cmu1_svs: Path, tmp_path: Path) -> None:
    """One good slide among bad ones: the run goes ahead (the bad ones fail on the workers and
    are recorded in the manifest)."""
    res = _run_fast(str(tmp_path / "missing.svs"), str(cmu1_svs), "--out", str(tmp_path / "o"))
    assert isinstance(res.exception, _ClusterStarted), res.output


@pytest.mark.usefixtures("no_cluster")
def test_run_refuses_an_out_that_cannot_be_a_folder(cmu1_svs: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("a file\n")
    for out, reason in ((readme, "exists and is not a folder"), (readme / "o", "is a file")):
        res = _run_fast(str(cmu1_svs), "--out", str(out))
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: {out}: ") and reason in res.output, res.output
        assert res.output.count("\n") == 1
    assert readme.read_text() == "a file\n"


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-0.25"])
def test_run_refuses_a_pixel_size_that_is_not_a_positive_number(
    cmu1_svs: Path, tmp_path: Path, value: str
) -> None:
    out = str(tmp_path / "o")
    for option in ("--mpp", "--analysis-mpp"):
        res = _run_fast(str(cmu1_svs), "--out", out, option, value)
        assert res.exit_code == 2, (option, res.output)
        assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
        assert "positive number of µm per pixel" in res.output
    csv = tmp_path / "cohort.csv"
    csv.write_text(f"path,mpp\n{cmu1_svs},{value}\n")
    res = _run_fast(str(csv), "--out", out)
    assert res.exit_code == 2, res.output
    assert res.output == f"error: {csv} line 2: mpp '{value}' is not a positive number\n"
    assert not (tmp_path / "o").exists()


def test_query_says_0_rows_for_an_empty_result(tmp_path: Path) -> None:
    write_manifest(tmp_path, [ManifestRow("a", "/x/a.svs", "failed", error="/x/a.svs: empty")])
    res = runner.invoke(app, ["query", str(tmp_path), "SELECT slide_id FROM slides WHERE false"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("0 rows")


def test_query_prints_long_values_whole_in_a_narrow_terminal(tmp_path: Path) -> None:
    """An id, a path or an error is wrapped in its column, never cut with an ellipsis."""
    long_path = "/data/cohort-2026/site-b/" + "x" * 70 + "/slide.svs"
    error = f"{long_path}: truncated file: expected 1,048,576 bytes in tile 12, found 4,096"
    write_manifest(tmp_path, [ManifestRow("case-" + "7" * 40, long_path, "failed", error=error)])
    res = runner.invoke(
        app, ["query", str(tmp_path), "SELECT slide_id, path, error FROM slides"],
        env={"COLUMNS": "80"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    # each column's pieces, read across the table's lines, give back the whole value
    pieces: list[str] = ["", "", ""]
    for line in res.output.splitlines():
        cells = line.split("│")[1:-1]
        if len(cells) == 3:
            pieces = [p + c.strip() for p, c in zip(pieces, cells, strict=True)]
    for got, value in zip(pieces, ("case-" + "7" * 40, long_path, error), strict=True):
        assert got.replace(" ", "") == value.replace(" ", ""), (got, value)


def test_export_prints_an_error_whole_below_the_table(tmp_path: Path) -> None:
    out = tmp_path / ("o" * 60)
    sid = "s" * 50
    table = out / "nuclei" / f"slide_id={sid}" / "part-0.parquet"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"not parquet")
    write_manifest(out, [ManifestRow(sid, "/x/s.svs", "done")])
    res = runner.invoke(app, ["export", str(out), "--format", "csv"], env={"COLUMNS": "60"})
    assert res.exit_code == 1, res.output
    assert "…" not in res.output and "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]  # one line: the terminal wraps it, not rich
    assert last.startswith(f"error: {sid}: {table}: not a readable nucleus table"), res.output


def test_the_command_leaves_its_objects_to_the_exit() -> None:
    """``nucscale`` freezes the objects it made when it returns, so the interpreter's exit does
    not walk them again (nucscale/cli/_app.py: 1.0 -> 0.33 s after a run)."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count()))\n"
        "sys.argv = ['nucscale', '--version']\n"
        "from nucscale.cli import main\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, frozen = res.stdout.splitlines()
    assert version.startswith("nucscale ")
    assert frozen.startswith("frozen ") and int(frozen.split()[1]) > 1_000


def test_progress_bars_redraw_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a pipe or a file the bar is drawn once, when it ends, with no refresh thread (which
    built the bar's table ten times a second for nobody: 0.03 cores); on a terminal it is
    redrawn twice a second."""
    import io

    from rich.console import Console
    from rich.progress import MofNCompleteColumn, TextColumn

    from nucscale.cli import _app

    piped = io.StringIO()
    monkeypatch.setattr(_app, "console", Console(file=piped, force_terminal=False, width=60))
    with _app.progress_bar(TextColumn("tasks"), MofNCompleteColumn()) as bar:
        task = bar.add_task("run", total=3)
        assert bar.live.auto_refresh is False
        assert bar.live._refresh_thread is None
        assert piped.getvalue() == ""
        bar.update(task, completed=3)
    assert piped.getvalue().split() == ["tasks", "3/3"]

    monkeypatch.setattr(_app, "console", Console(file=io.StringIO(), force_terminal=True))
    with _app.progress_bar(TextColumn("tasks")) as bar:
        assert bar.live.auto_refresh is True
        assert bar.live.refresh_per_second == _app.PROGRESS_REFRESH == 2
        assert bar.live._refresh_thread is not None


@pytest.mark.usefixtures("no_cluster")
def test_run_refuses_a_cpu_precision_it_cannot_apply(cmu1_svs: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    res = _run_fast(str(cmu1_svs), "--out", out, "--cpu-precision", "half")
    assert res.exit_code == 2, res.output
    assert res.output == "error: cpu precision must be one of auto, float32, bfloat16, got 'half'\n"
    res = _run_fast(
        str(cmu1_svs), "--out", out, "--model", "baseline", "--cpu-precision", "float32"
    )
    assert res.exit_code == 2, res.output
    assert res.output == "error: --cpu-precision applies to --model unet, not 'baseline'\n"
    res = _run_fast(str(cmu1_svs), "--out", out, "--model", "baseline", "--cpu-runtime", "torch")
    assert res.exit_code == 2, res.output
    assert res.output == (
        "error: --cpu-runtime applies to --model unet or hovernet, not 'baseline'\n"
    )
    res = _run_fast(str(cmu1_svs), "--out", out, "--cpu-runtime", "onnx")
    assert res.exit_code == 2, res.output
    assert res.output == "error: cpu runtime must be one of auto, openvino, torch, got 'onnx'\n"
    assert not (tmp_path / "o").exists()


def test_an_error_from_a_library_is_printed_on_one_line() -> None:
    from nucscale.cli import _app

    with _app.console.capture() as printed:
        _run._error("w.pt: cannot load (Error(s) in loading:\n\tMissing: a.\n\tExtra: b.)")
    assert (
        printed.get() == "error: w.pt: cannot load (Error(s) in loading:; Missing: a.; Extra: b.)\n"
    )
