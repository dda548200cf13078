"""BioImageIOModel on the real bioimage.io package "UNet 2D Nuclei Broad" (../shared/data)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.contracts import PatchSpec
from nucscale.errors import SegmenterError
from nucscale.infer._engine import predict_region
from nucscale.io import open_slide
from nucscale.models._bioimageio_package import load_package, read_test_tensors
from nucscale.models.bioimageio import BioImageIOModel

# sha256 values the package's bioimageio.yaml gives for its two runnable weights files
SHA = {
    "torchscript": "a4b0659a1b48454588b12179855ad0a0c9b69ccaa89b8bb06e6271e8f60b02fe",
    "onnx": "85f5ac80fa977fea3562ef97c8c5950288be2c4f4cdb5d994807df97008ce088",
}


@pytest.fixture(scope="module")
def models(bioimageio_unet: Path) -> dict[str, BioImageIOModel]:
    return {
        fmt: BioImageIOModel(bioimageio_unet, mpp=0.5, weights_format=fmt, modality="brightfield")
        for fmt in ("torchscript", "onnx")
    }


def _copy(package: Path, dest: Path) -> Path:
    shutil.copytree(package, dest)
    for f in dest.iterdir():
        f.chmod(0o644)  # shared/ is read-only; the copy is edited
    return dest


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_reproduces_the_package_test_tensors(
    models: dict[str, BioImageIOModel], bioimageio_unet: Path, fmt: str
) -> None:
    model = models[fmt]
    x, expected = read_test_tensors(bioimageio_unet)
    assert x.shape == expected.shape == (1, 1, 512, 512)
    y = model.run_tensor(x)  # the package's own pre/post-processing: per-sample statistics
    assert y.shape == expected.shape and y.dtype == np.float32
    assert np.abs(y - expected).max() <= 1e-4
    assert model.weights_format == fmt and model.weights_sha256 == SHA[fmt]
    described = model.describe()
    assert described["weights_format"] == fmt
    assert described["runtime"].startswith("onnxruntime" if fmt == "onnx" else "torch")
    # geometry from the YAML: fixed 512 px input, output halo 32 -> the central 448 px
    assert model.spec == PatchSpec(512, 448) and model.batch_size == 1
    with torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        whole = model.run_network(t).numpy()
        centre = model.forward(t).numpy()
    assert centre.shape == (1, 1, 448, 448)
    np.testing.assert_array_equal(centre, whole[:, :, 32:480, 32:480])


def test_torchscript_and_onnx_agree_on_a_slide_patch(
    models: dict[str, BioImageIOModel], cmu1_svs: Path
) -> None:
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 1000, 500, 512, 512)
    ts, ox = models["torchscript"], models["onnx"]
    cal = ts.calibrate(rgb, np.ones(rgb.shape[:2], bool))
    with torch.inference_mode():
        a = ts.forward(ts.preprocess(rgb[None], cal)).numpy()
        b = ox.forward(ox.preprocess(rgb[None], cal)).numpy()
    assert a.shape == (1, 1, 448, 448)
    assert np.abs(a - b).max() < 1e-4
    assert 0.05 < float((a > 0.5).mean()) < 0.6  # nuclei found, not everything


def test_folder_yaml_and_zip_load_the_same_package(bioimageio_unet: Path, tmp_path: Path) -> None:
    archive = tmp_path / "unet2d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in bioimageio_unet.iterdir():
            zf.write(f, f.name)
    folder = load_package(bioimageio_unet)
    yaml = load_package(bioimageio_unet / "bioimageio.yaml")
    zipped = load_package(archive)
    assert zipped.yaml == f"{archive}:bioimageio.yaml"
    assert folder.yaml == yaml.yaml == str(bioimageio_unet / "bioimageio.yaml")
    for pkg in (yaml, zipped):
        assert (pkg.name, pkg.input_axes, pkg.tiling, pkg.halo, pkg.weights) == (
            folder.name, folder.input_axes, folder.tiling, folder.halo, folder.weights
        )  # fmt: skip
    assert folder.name == "UNet 2D Nuclei Broad" and folder.mpp is None and folder.channels == 1
    assert [op.id for op in folder.preprocessing] == [
        "ensure_dtype", "zero_mean_unit_variance", "ensure_dtype"
    ]  # fmt: skip
    assert [op.id for op in folder.postprocessing] == ["sigmoid", "ensure_dtype"]
    model = BioImageIOModel(archive, mpp=0.5, weights_format="onnx")
    assert model.weights_sha256 == SHA["onnx"]
    x, expected = read_test_tensors(archive)
    assert np.abs(model.run_tensor(x) - expected).max() <= 1e-4


def test_bad_packages_name_the_file_and_the_reason(bioimageio_unet: Path, tmp_path: Path) -> None:
    with pytest.raises(SegmenterError, match=r"nope: no such file or folder"):
        load_package(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SegmenterError, match=r"empty: not a bioimage.io package: no bioimageio"):
        load_package(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SegmenterError, match=r"notes\.txt: not a bioimage.io package"):
        load_package(text)

    pkg = _copy(bioimageio_unet, tmp_path / "pkg")
    yaml = pkg / "bioimageio.yaml"
    (pkg / "weights.onnx").unlink()
    with pytest.raises(
        SegmenterError, match=rf"{yaml}: onnx weights weights\.onnx: cannot be read"
    ):
        BioImageIOModel(pkg, mpp=0.5, weights_format="onnx")
    (pkg / "weights.pt").write_bytes(b"not torchscript")  # corrupt: its sha256 no longer matches
    with pytest.raises(SegmenterError, match=rf"{yaml}: torchscript weights weights\.pt: sha256"):
        BioImageIOModel(pkg, mpp=0.5, weights_format="torchscript")

    original = (bioimageio_unet / "bioimageio.yaml").read_text()
    yaml.write_text(original.replace("id: zero_mean_unit_variance", "id: fancy_norm"))
    with pytest.raises(
        SegmenterError,
        match=rf"{yaml}: inputs\[0\]\.preprocessing\[1\]: unknown preprocessing op 'fancy_norm'",
    ):
        load_package(pkg)
    # an op the spec knows but nucscale cannot run once per slide
    yaml.write_text(original.replace("- id: sigmoid", "- id: zero_mean_unit_variance"))
    with pytest.raises(SegmenterError, match=r"postprocessing\[0\]: op 'zero_mean_unit_variance'"):
        load_package(pkg)
    yaml.write_text("just: [a, list")
    with pytest.raises(SegmenterError, match=rf"{yaml}: not a readable YAML file"):
        load_package(pkg)


def test_a_package_without_pixel_size_needs_one(bioimageio_unet: Path) -> None:
    with pytest.raises(SegmenterError, match=r"bioimageio\.yaml: .*no pixel size.*--analysis-mpp"):
        BioImageIOModel(bioimageio_unet)
    model = BioImageIOModel(bioimageio_unet, mpp=0.25, weights_format="onnx")
    assert model.mpp == 0.25 and model.describe()["mpp_source"] == "--analysis-mpp"


def test_a_declared_pixel_size_is_the_model_mpp(bioimageio_unet: Path, tmp_path: Path) -> None:
    pkg = _copy(bioimageio_unet, tmp_path / "pkg")
    yaml = pkg / "bioimageio.yaml"
    text = yaml.read_text()
    # the input's space axes in nanometres: 325 nm/px
    scaled = text.replace(
        "      - size: 512\n        id: y\n        type: space\n      - size: 512\n",
        "      - size: 512\n        id: y\n        type: space\n        unit: nanometer\n"
        "        scale: 325\n      - size: 512\n        unit: nanometer\n        scale: 325\n",
    )
    assert scaled != text
    # the output axes must carry the same unit to refer to the input's size
    scaled = scaled.replace(
        "        id: y\n        type: space\n      - halo: 32",
        "        id: y\n        type: space\n        unit: nanometer\n        scale: 325\n"
        "      - halo: 32",
    ).replace(
        "          axis_id: x\n        type: space\n",
        "          axis_id: x\n        type: space\n        unit: nanometer\n        scale: 325\n",
    )
    yaml.write_text(scaled)
    model = BioImageIOModel(pkg, weights_format="onnx")
    assert model.mpp == pytest.approx(0.325) and model.describe()["mpp_source"] == "package"


def test_statistics_are_the_slides_not_the_patches(
    models: dict[str, BioImageIOModel], cmu1_svs: Path
) -> None:
    """Maps of two overlapping windows equal the whole image's maps on the overlap."""
    model = models["onnx"]
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 600, 900, 1408, 1408)
    cal = model.calibrate(rgb, np.ones(rgb.shape[:2], bool))  # one set of numbers per slide
    assert set(cal) == {"zero_mean_unit_variance[1].mean", "zero_mean_unit_variance[1].std"}
    whole, (wx0, wy0, wx1, wy1) = predict_region(model, rgb, batch_size=1, calibration=cal)
    assert (wx0, wy0, wx1, wy1) == (448, 448, 1344, 1344)
    for x, y, w, h in ((0, 0, 1000, 1000), (400, 300, 1008, 1108)):
        maps, (x0, y0, x1, y1) = predict_region(
            model, rgb[y : y + h, x : x + w], (x, y), batch_size=1, calibration=cal
        )
        assert x1 > x0 and y1 > y0
        gx0, gy0 = x + x0, y + y0  # the window's valid region in image coordinates
        np.testing.assert_array_equal(
            maps, whole[:, gy0 - wy0 : gy0 - wy0 + (y1 - y0), gx0 - wx0 : gx0 - wx0 + (x1 - x0)]
        )
    # a patch is normalised with the slide's mean and std, not its own
    patch = rgb[448 - 32 : 448 + 480, 448 - 32 : 448 + 480]
    x = model.preprocess(patch[None], cal).numpy()[0, 0]
    from nucscale.models.bioimageio import input_signal

    signal = input_signal(patch[None], "haematoxylin")[0, ..., 0]
    mean, std = cal["zero_mean_unit_variance[1].mean"][0], cal["zero_mean_unit_variance[1].std"][0]
    np.testing.assert_allclose(x, (signal - mean) / (std + 1e-6), rtol=1e-5, atol=1e-5)
    assert abs(float(x.mean())) > 0.05  # per-patch statistics would make this ~0
    with pytest.raises(SegmenterError, match=r"slide's statistics.*calibrate"):
        model.preprocess(patch[None])


def test_input_signal_follows_the_modality(bioimageio_unet: Path, cmu1_svs: Path) -> None:
    """One-channel model: brightest channel on fluorescence, haematoxylin on brightfield (nuclei
    bright, glass dark), each normalised by the slide's statistics."""
    from nucscale.tiling import optical_density

    fluo = BioImageIOModel(bioimageio_unet, mpp=0.5, weights_format="onnx")
    bright = BioImageIOModel(
        bioimageio_unet, mpp=0.5, weights_format="onnx", modality="brightfield"
    )
    assert (fluo.signal, bright.signal) == ("brightest", "haematoxylin")
    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 1000, 500, 512, 512)
        thumb = s.read_region(0, 0, 0, 2220, 2967)[::4, ::4]
    tissue = optical_density(thumb).sum(-1) > 0.3
    cal = bright.calibrate(thumb, tissue)
    x = bright.preprocess(rgb[None], cal).numpy()[0, 0]
    darkest = optical_density(rgb).sum(-1) > 1.2  # nuclei: dark purple
    glass = rgb.mean(-1) > 225
    assert x[darkest].mean() > x[glass].mean() + 1.0  # in units of the slide's std
    # brightfield statistics are over tissue only: glass would pull the mean down
    whole = bright.calibrate(thumb, np.ones(tissue.shape, bool))
    key = "zero_mean_unit_variance[1].mean"
    assert cal[key][0] > whole[key][0]
    grey = fluo.preprocess(rgb[None], fluo.calibrate(rgb, np.ones(rgb.shape[:2], bool)))
    assert grey.shape == (1, 1, 512, 512)
