"""``nucscale run --model bioimageio``: a bioimage.io package through the CLI on real slides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from nucscale.store import read_metadata

pytestmark = pytest.mark.slow


def test_cmu1_through_the_cli(
    nucscale_cli, bioimageio_unet: Path, cmu1_svs: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    proc = nucscale_cli(
        "run", str(cmu1_svs), "--out", str(out), "--model", "bioimageio",
        "--weights", str(bioimageio_unet), "--analysis-mpp", "0.5", "--weights-format", "onnx",
        "--dashboard", ":0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 done, 0 failed" in proc.stdout + proc.stderr  # the console is stderr
    part = out / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet"
    meta = read_metadata(part)
    assert meta["modality"] == "brightfield" and meta["input_signal"] == "haematoxylin"
    assert meta["weights_format"] == "onnx" and meta["mpp_source"] == "--analysis-mpp"
    assert meta["patch_input"] == "512" and meta["patch_output"] == "448"
    assert meta["bioimageio_package"] == str(bioimageio_unet.resolve())
    # the slide's statistics, once, over its tissue (haematoxylin density, 0..255 scale)
    mean = json.loads(meta["calibration.zero_mean_unit_variance[1].mean"])[0]
    std = json.loads(meta["calibration.zero_mean_unit_variance[1].std"])[0]
    assert 10 < mean < 80 and 10 < std < 80
    table = pq.read_table(part, columns=["area", "centroid_x_um", "type_name"])
    # measured 3481 nuclei (0.64 mm² of tissue), area median 25 µm² (5-95 %: 6-141 µm²);
    # the network was trained on fluorescence: dense dark stroma is cut into large cells too
    assert 2800 <= table.num_rows <= 4200
    area = table.column("area").to_numpy()
    assert 15 < float(np.median(area)) < 40
    assert float(area.min()) >= 20 * 0.499**2 * 0.99  # min_size 20 px at the analysis pixel size
    assert set(table.column("type_name").to_pylist()) == {"nucleus"}


def test_a_package_without_pixel_size_is_refused_before_the_cluster(
    nucscale_cli, bioimageio_unet: Path, cmu1_svs: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    proc = nucscale_cli(
        "run", str(cmu1_svs), "--out", str(out), "--model", "bioimageio",
        "--weights", str(bioimageio_unet), "--dashboard", ":0",
    )  # fmt: skip
    assert proc.returncode == 2
    text = (proc.stdout + proc.stderr).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text  # one line, no traceback
    assert f"{bioimageio_unet / 'bioimageio.yaml'}: the package declares no pixel size;" in text
    assert "pass --analysis-mpp" in text
    assert "dashboard" not in text and not out.exists()  # no cluster, nothing written


def test_bad_packages_are_one_line_errors(
    nucscale_cli, bioimageio_unet: Path, cmu1_svs: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    not_a_package = tmp_path / "weights.pt"
    not_a_package.write_bytes((bioimageio_unet / "weights.pt").read_bytes())
    proc = nucscale_cli(
        "run", str(cmu1_svs), "--out", str(tmp_path / "out"), "--model", "bioimageio",
        "--weights", str(not_a_package), "--analysis-mpp", "0.5", "--dashboard", ":0",
    )  # fmt: skip
    text = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and len(text.splitlines()) == 1, text
    assert f"{not_a_package}: not a bioimage.io package" in text
    proc = nucscale_cli(
        "run", str(cmu1_svs), "--out", str(tmp_path / "out"), "--model", "unet",
        "--weights-format", "onnx", "--dashboard", ":0",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--weights-format applies to --model bioimageio" in proc.stdout + proc.stderr
