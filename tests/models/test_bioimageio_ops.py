"""bioimage.io processing ops: statistics once per slide, values per channel, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nucscale.errors import SegmenterError
from nucscale.models._bioimageio_ops import Op, apply_ops, calibrate_ops, check_ops

IDS = {"b": "batch", "c": "channel", "y": "y", "x": "x"}


@pytest.fixture(scope="module")
def slide() -> torch.Tensor:
    """A seeded two-channel 'slide' (1, 2, 64, 64) with different levels per channel."""
    rng = np.random.default_rng(0)
    a = rng.normal(100.0, 20.0, (64, 64))
    b = rng.normal(10.0, 2.0, (64, 64))
    return torch.from_numpy(np.stack([a, b])[None].astype(np.float32))


def test_zero_mean_unit_variance_per_channel_uses_the_slide(slide: torch.Tensor) -> None:
    ops = [Op("zero_mean_unit_variance", {"axes": ["batch", "x", "y"], "eps": 1e-6})]
    cal = calibrate_ops(ops, slide, None, IDS)
    mean, std = cal["zero_mean_unit_variance[0].mean"], cal["zero_mean_unit_variance[0].std"]
    assert (
        len(mean) == 2
        and mean[0] == pytest.approx(100, abs=1)
        and std[1] == pytest.approx(2, rel=0.05)
    )
    whole = apply_ops(ops, slide, IDS, cal)
    assert whole[0, 0].mean().abs() < 1e-4 and whole[0, 1].std(correction=0) == pytest.approx(
        1, abs=1e-4
    )
    part = apply_ops(ops, slide[:, :, 10:30, 5:40], IDS, cal)  # a patch: the same numbers
    torch.testing.assert_close(part, whole[:, :, 10:30, 5:40])
    assert part[0, 0].mean().abs() > 1e-3  # not re-centred on the patch
    joint = calibrate_ops([Op("zero_mean_unit_variance", {"axes": None})], slide, None, IDS)
    assert len(joint["zero_mean_unit_variance[0].mean"]) == 1


def test_scale_range_and_clip_percentiles_over_selected_pixels(slide: torch.Tensor) -> None:
    scale = {"axes": ["channel", "x", "y"], "min_percentile": 1.0, "max_percentile": 99.0}
    ops = [
        Op("scale_range", {**scale, "eps": 1e-6}),  # jointly over the channels
        Op("clip", {"min": 0.0, "max_percentile": 50.0, "axes": ["x", "y", "channel"]}),
    ]
    select = np.zeros((64, 64), bool)
    select[:32] = True  # statistics from the top half only (e.g. the tissue mask)
    cal = calibrate_ops(ops, slide, select, IDS)
    joint = slide[0, :, :32].double().numpy().ravel()
    low, high = np.percentile(joint, [1.0, 99.0])
    assert cal["scale_range[0].lower"] == [pytest.approx(low)]
    assert cal["scale_range[0].upper"] == [pytest.approx(high)]
    y = apply_ops(ops, slide, IDS, cal)
    scaled = (slide - low) / (high - low + 1e-6)
    median = float(np.percentile(scaled[0, :, :32].numpy(), 50))
    assert cal["clip[1].max"] == [pytest.approx(median, abs=1e-5)]
    assert float(y.min()) == 0.0 and float(y.max()) == pytest.approx(median, abs=1e-5)


def test_fixed_ops_per_channel_and_dtype() -> None:
    x = torch.tensor([[[[0.0, 1.0]], [[2.0, 3.0]]]])  # (1, 2, 1, 2)
    ops = [
        Op("scale_linear", {"axis": "channel", "gain": [2.0, 10.0], "offset": [1.0, 0.0]}),
        Op("fixed_zero_mean_unit_variance", {"mean": 1.0, "std": 2.0}),
        Op("binarize", {"axis": "channel", "threshold": [0.4, 14.0]}),
    ]
    y = apply_ops(ops, x, IDS)
    # channel 0: 1, 3 -> 0, 1 -> binarised at 0.4: 0, 1; channel 1: 20, 30 -> 9.5, 14.5 -> 0, 1
    assert y.tolist() == [[[[0.0, 1.0]], [[0.0, 1.0]]]]
    soft = apply_ops([Op("softmax", {"axis": "channel"})], x, IDS)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(1, 1, 2))
    truncated = apply_ops(
        [Op("scale_linear", {"gain": 0.7}), Op("ensure_dtype", {"dtype": "uint8"})], x, IDS
    )
    assert truncated.dtype == torch.uint8 and truncated.tolist() == [[[[0, 0]], [[1, 2]]]]
    assert apply_ops([Op("sigmoid")], x, IDS)[0, 0, 0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("op", "output", "message"),
    [
        (
            Op("scale_mean_variance", {"reference_tensor": "raw"}),
            False,
            "not supported by nucscale",
        ),
        (Op("zero_mean_unit_variance", {"axes": ["x"]}), False, "does not span both y and x"),
        (Op("scale_range", {"axes": ["x", "y"], "reference_tensor": "other"}), False, "'other'"),
        (Op("scale_linear", {"axis": "x", "gain": [1.0, 2.0]}), False, "per channel only"),
        (Op("scale_range", {"axes": ["x", "y"]}), True, "statistics of the network's output"),
        (Op("clip", {"max_percentile": 99.0}), True, "needs output statistics"),
    ],
)
def test_what_cannot_be_run_consistently_is_refused(op: Op, output: bool, message: str) -> None:
    with pytest.raises(SegmenterError, match=rf"pkg\.yaml: ops\[0\]: .*{message}"):
        check_ops([op], "pkg.yaml: ops", IDS, own_tensor="raw", output=output)
    check_ops([Op("sigmoid"), Op("clip", {"min": 0.0})], "pkg.yaml", IDS, output=True)  # fine


def test_patch_size_is_the_valid_one_nearest_512() -> None:
    from nucscale.models._bioimageio_axes import Tiling
    from nucscale.models.bioimageio import choose_patch_size

    assert choose_patch_size(Tiling(512, 0), 0, 32) == 512  # fixed size: that one
    assert choose_patch_size(Tiling(64, 16), 0, 0) == 512
    size = choose_patch_size(Tiling(100, 48), 0, 8)  # 484 or 532: 532 is nearer
    assert size == 532 and Tiling(100, 48).valid(size) and not Tiling(100, 48).valid(512)
    # an output that the halo would empty grows the patch by steps
    assert choose_patch_size(Tiling(16, 16), -8, 300, target=16) == 624
