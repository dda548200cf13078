"""The network's arithmetic on the CPU (float32, or bfloat16 where the CPU computes it) and
what runs it there (OpenVINO where installed, else torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.contracts import DenseModel
from nucscale.errors import SegmenterError
from nucscale.infer import _precision, _registry, get_segmenter
from nucscale.infer._dense import DenseSegmenter
from nucscale.infer._precision import cpu_precision, cpu_runtime, native_bf16
from nucscale.infer._twin import bf16_twin


def test_auto_is_bfloat16_only_where_the_cpu_does_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_precision, "native_bf16", lambda: True)
    assert cpu_precision("auto") == "bfloat16"
    monkeypatch.setattr(_precision, "native_bf16", lambda: False)
    assert cpu_precision("auto") == "float32"
    assert cpu_precision("bfloat16") == "bfloat16"  # asked for: emulated where not native
    assert cpu_precision("float32") == "float32"
    with pytest.raises(SegmenterError, match=r"auto, float32, bfloat16.*'half'"):
        cpu_precision("half")


def test_a_torch_without_the_cpu_checks_means_no_native_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(native_bf16(), bool)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert native_bf16() is False


def test_the_twin_is_made_once_and_leaves_the_network_alone(tiny_model: DenseModel) -> None:
    module = tiny_model.module
    twin = bf16_twin(module)
    assert bf16_twin(module) is twin
    assert all(p.dtype == torch.bfloat16 for p in twin.parameters())
    assert all(p.dtype == torch.float32 for p in module.parameters())
    x = torch.rand(2, 1, 38, 38)
    with torch.inference_mode():
        y, y32 = twin(x), module(x)
    assert y.dtype == torch.float32 and y.shape == y32.shape
    assert 0 < float((y - y32).abs().max()) < 0.02  # rounded, not another function


def test_the_unet_segmenter_takes_its_cpu_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_segmenter("unet", cpu_precision="float32").precision == "float32"  # type: ignore[attr-defined]
    bf16 = get_segmenter("unet", cpu_precision="bfloat16")
    assert bf16.precision == "bfloat16"  # type: ignore[attr-defined]
    assert bf16.describe()["cpu_precision"] == "bfloat16"
    monkeypatch.setattr(_precision, "native_bf16", lambda: False)
    monkeypatch.setattr(_registry, "_CACHE", {})  # "auto" built again, not an earlier test's
    assert get_segmenter("unet", cpu_precision="auto", weights=None).precision == "float32"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        DenseSegmenter(bf16.model, precision="auto")  # type: ignore[attr-defined]


def _crop(svs: Path) -> np.ndarray:
    import openslide

    with openslide.OpenSlide(str(svs)) as slide:
        return np.asarray(slide.read_region((500, 300), 0, (1100, 1100)).convert("RGB"))


def test_default_unet_in_bfloat16_finds_the_float32_nuclei(cmu1_svs: Path) -> None:
    """The shipped U-Net on a real CMU-1 region (0.499 µm/px, its working scale): bfloat16
    maps differ from float32 ones by rounding, and the nuclei are nearly all the same."""
    from nucscale.analysis import panoptic_quality

    rgb = _crop(cmu1_svs)
    seg32 = get_segmenter("unet", cpu_precision="float32")
    seg16 = get_segmenter("unet", cpu_precision="bfloat16")
    cal = seg32.calibrate(rgb, np.ones(rgb.shape[:2], bool))
    a, b = seg32.segment(rgb, cal), seg16.segment(rgb, cal)
    assert a.valid == b.valid
    n32, n16 = int(a.labels.max()), int(b.labels.max())
    assert n32 >= 60  # a crop full of nuclei
    assert abs(n16 - n32) <= max(2, n32 // 30)
    assert not np.array_equal(a.labels, b.labels)  # not the float32 run again
    assert panoptic_quality(a.labels, b.labels)["pq"] >= 0.93


def test_the_cpu_runtime_is_openvino_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpu_runtime("auto") == "openvino"  # a dependency: installed here
    assert cpu_runtime("torch") == "torch"
    with pytest.raises(SegmenterError, match="cpu runtime must be one of auto, openvino, torch"):
        cpu_runtime("onnx")
    monkeypatch.setattr(_precision, "openvino_installed", lambda: False)
    assert cpu_runtime("auto") == "torch"
    with pytest.raises(SegmenterError, match="openvino package is not installed"):
        cpu_runtime("openvino")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_openvino_finds_the_nuclei_torch_finds(cmu1_svs: Path, precision: str) -> None:
    """The shipped U-Net on a real CMU-1 region, run by OpenVINO and by torch: float32 maps
    agree to float16's rounding (the maps' storage), bfloat16 ones to bfloat16's; the nuclei
    are the same or nearly; the provenance names the runtime."""
    from nucscale.analysis import panoptic_quality
    from nucscale.infer._engine import predict_image

    rgb = _crop(cmu1_svs)
    on_ov = get_segmenter("unet", cpu_precision=precision, cpu_runtime="openvino")
    on_torch = get_segmenter("unet", cpu_precision=precision, cpu_runtime="torch")
    assert on_ov.describe()["cpu_runtime"].startswith("openvino 20")
    assert on_torch.describe()["cpu_runtime"] == "torch"
    model = on_ov.model  # type: ignore[attr-defined]
    maps = {
        rt: predict_image(model, rgb, precision=precision, runtime=rt).astype(np.float32)
        for rt in ("openvino", "torch")
    }
    diff = np.abs(maps["openvino"] - maps["torch"])
    if precision == "float32":
        assert float(diff.max()) <= 1e-3
    else:
        assert float(diff.mean()) < 2e-3 and float(diff.max()) < 0.3
    cal = on_ov.calibrate(rgb, np.ones(rgb.shape[:2], bool))
    a, b = on_ov.segment(rgb, cal), on_torch.segment(rgb, cal)
    assert int(a.labels.max()) >= 60
    assert abs(int(a.labels.max()) - int(b.labels.max())) <= 2
    assert panoptic_quality(b.labels, a.labels)["pq"] >= (0.99 if precision == "float32" else 0.93)


def test_a_worker_without_openvino_says_so(cmu1_svs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward task on a worker that cannot import openvino, where the slide's plan chose it,
    fails with a message that names the cause and the way out."""
    import sys

    from nucscale.infer._engine import predict_image

    model = get_segmenter("unet", cpu_runtime="openvino").model  # type: ignore[attr-defined]
    rgb = _crop(cmu1_svs)[:600, :600]
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(SegmenterError, match=r"cannot import openvino.*--cpu-runtime torch"):
        predict_image(model, rgb, precision="float32", runtime="openvino")


def test_openvino_is_loaded_without_its_telemetry() -> None:
    """``import openvino`` sends a usage event to Google Analytics through openvino_telemetry
    (a DNS query from every worker); nucscale loads it with that package unimportable, so
    OpenVINO's own no-op stub is bound instead, and runs the U-Net so in a fresh process."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from nucscale.infer import get_segmenter\n"
        "from nucscale.infer._engine import predict_image\n"
        "model = get_segmenter('unet').model\n"
        "rgb = np.full((600, 600, 3), 200, np.uint8)\n"
        "predict_image(model, rgb, precision='bfloat16', runtime='openvino')\n"
        "import openvino.tools.ovc.telemetry_utils as t\n"
        "print(t.tm.__name__, 'openvino_telemetry' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "False"], res.stderr


def test_a_network_openvino_cannot_compile_is_a_one_line_error(
    cmu1_svs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What OpenVINO's plugin refuses (here a precision it does not know) fails the forward
    with one line that names the model, the precision and the way out."""
    from nucscale.infer import _openvino
    from nucscale.infer._engine import predict_image

    model = get_segmenter("unet", cpu_runtime="openvino").model  # type: ignore[attr-defined]
    monkeypatch.setattr(_openvino, "_HINTS", {"float32": "f12"})
    monkeypatch.setattr(_openvino, "_COMPILED", _openvino.weakref.WeakKeyDictionary())
    with pytest.raises(SegmenterError) as info:
        predict_image(model, _crop(cmu1_svs)[:600, :600], precision="float32", runtime="openvino")
    text = str(info.value)
    assert text.startswith(
        "OpenVINO could not compile unet in float32 on this CPU (Wrong value f12 for property "
        "key INFERENCE_PRECISION_HINT"
    )
    assert text.endswith("); run with --cpu-runtime torch") and "\n" not in text
