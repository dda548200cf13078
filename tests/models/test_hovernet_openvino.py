"""HoVer-Net run by OpenVINO on CPU workers: the graph built from the weights is the network,
and the engine's maps of a real slide region equal torch's to float rounding.

Seeded weights (the released checkpoints cannot be had here), with batch-norm statistics drawn
too, so every folded scale and shift is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nucscale.config import Settings
from nucscale.infer import get_segmenter
from nucscale.models._hovernet_openvino import hovernet_graph
from nucscale.models.hovernet import HoVerNet, HoVerNetModule
from nucscale.pipeline._plan import segmenter_params


def _seeded(mode: str, nr_types: int | None, seed: int = 1) -> HoVerNetModule:
    torch.manual_seed(seed)
    module = HoVerNetModule(mode, nr_types)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return module.eval()


@pytest.mark.parametrize(
    ("mode", "nr_types", "batch", "side"), [("fast", 6, 2, 192), ("original", None, 1, 270)]
)
def test_the_openvino_graph_is_the_network(
    mode: str, nr_types: int | None, batch: int, side: int
) -> None:
    """Fast mode on 192 px (100 px out: the same layers, a smaller batch of work) and original
    mode on its 270 px, against the module's logits in float32."""
    from nucscale._offline import import_openvino

    ov = import_openvino()
    module = _seeded(mode, nr_types)
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(2)) * 255
    with torch.inference_mode():
        ref = module(x)
    graph = hovernet_graph(module, batch, side)
    compiled = ov.Core().compile_model(
        graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )
    out = compiled({0: x.numpy()})
    names = [o.get_any_name() for o in compiled.outputs]
    assert names == list(module.decoder.keys())  # tp (when typed), np, hv
    for i, name in enumerate(names):
        want = ref[name].numpy()
        assert out[i].shape == want.shape
        assert np.abs(out[i] - want).max() <= 1e-4 * np.abs(want).max()  # measured ~1e-5


@pytest.mark.slow
def test_hovernet_on_openvino_gives_torchs_maps(cmu1_svs: Path, tmp_path: Path) -> None:
    """The segmenter built with ``cpu_runtime`` ``auto`` runs HoVer-Net on OpenVINO (installed
    here) in float32; its maps of a CMU-1 patch equal torch's to a few float16 steps."""
    from nucscale.infer._engine import batch_for, predict_region
    from nucscale.io import open_slide

    origin = (6 * 164 - 46, 5 * 164 - 46)  # one patch of the global 164 px grid, margin 46
    with open_slide(cmu1_svs) as slide:
        rgb = slide.read_region(0, *origin, 256, 256)
    module = _seeded("fast", 6)
    # batch norms fitted to the patch's activations, as a trained network's are: raw seeded
    # weights give logits of ~1e5, past float16's range (the stored maps')
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average
    module.train()
    with torch.no_grad():
        module(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    weights = tmp_path / "hovernet_fast.tar"
    torch.save({"desc": module.eval().state_dict()}, weights)
    settings = Settings(segmenter="hovernet", weights=str(weights))
    assert dict(segmenter_params(settings))["cpu_runtime"] == "openvino"  # the plan's choice
    on_ov = get_segmenter("hovernet", weights=str(weights))
    on_torch = get_segmenter("hovernet", weights=str(weights), cpu_runtime="torch")
    assert (on_ov.runtime, on_torch.runtime) == ("openvino", "torch")  # type: ignore[attr-defined]
    assert on_ov.precision == "float32"  # type: ignore[attr-defined]
    assert on_ov.describe()["cpu_runtime"].startswith("openvino ")
    model = on_ov.model  # type: ignore[attr-defined]
    assert isinstance(model, HoVerNet)
    cpu = torch.device("cpu")  # OpenVINO takes one patch at a time, torch batches of 8
    assert (batch_for(model, cpu, None, "openvino"), batch_for(model, cpu, None, "torch")) == (1, 8)
    maps = {
        runtime: predict_region(model, rgb, origin, batch_size=1, runtime=runtime)[0]
        for runtime in ("torch", "openvino")
    }
    assert maps["torch"].shape == maps["openvino"].shape == (9, 164, 164)
    assert maps["torch"].std() > 0.01  # maps with something in them
    np.testing.assert_allclose(maps["openvino"], maps["torch"], rtol=2e-3, atol=2e-3)
