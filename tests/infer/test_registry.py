"""get_segmenter: names, parameters, one instance per process."""

from __future__ import annotations

from pathlib import Path

import pytest

import nucscale.infer as infer
from nucscale.errors import NucscaleError, SegmenterError
from nucscale.infer import SEGMENTERS, BaselineSegmenter, get_segmenter


def test_registry_lists_baseline() -> None:
    assert SEGMENTERS["baseline"] is BaselineSegmenter
    assert {"baseline", "redcells", "unet", "hovernet", "bioimageio"} == set(SEGMENTERS)
    assert all(callable(factory) for factory in SEGMENTERS.values())


def test_bioimageio_needs_a_package() -> None:
    with pytest.raises(SegmenterError, match=r"bioimageio: pass the model package .* --weights"):
        get_segmenter("bioimageio")


def test_same_name_and_params_give_the_same_instance() -> None:
    a = get_segmenter("baseline", mpp=0.5, min_area_um2=6.0)
    b = get_segmenter("baseline", min_area_um2=6.0, mpp=0.5)  # order does not matter
    assert a is b
    assert isinstance(a, BaselineSegmenter)


def test_a_parameter_at_its_default_is_the_same_build() -> None:
    """The plan asks the segmenter's pixel size without the slide's modality and then builds
    it with ``modality="brightfield"``: one build (the weights load once), not two."""
    plain = get_segmenter("unet")
    assert get_segmenter("unet", modality="brightfield") is plain
    assert get_segmenter("unet", weights=None, modality="brightfield") is plain
    other = get_segmenter("unet", modality="fluorescence")
    assert other is not plain and other.model.modality == "fluorescence"
    assert get_segmenter("baseline", mpp=0.5) is get_segmenter("baseline")


def test_different_params_give_different_instances() -> None:
    coarse = get_segmenter("baseline", mpp=0.5)
    fine = get_segmenter("baseline", mpp=0.25)
    assert coarse is not fine
    assert fine.max_nucleus_diameter == 2 * coarse.max_nucleus_diameter


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(
        SegmenterError,
        match=r"unknown segmenter 'cellpose'; known: baseline, bioimageio, hovernet, redcells, "
        r"unet",
    ):
        get_segmenter("cellpose")


def test_hovernet_needs_a_checkpoint() -> None:
    with pytest.raises(SegmenterError, match="hovernet: pass a checkpoint with --weights"):
        get_segmenter("hovernet")


def test_bad_params_are_segmenter_errors() -> None:
    with pytest.raises(SegmenterError, match="bad parameters"):
        get_segmenter("baseline", weights="x.pt")
    with pytest.raises(SegmenterError, match="hashable"):
        get_segmenter("baseline", mpp=[0.5])
    with pytest.raises(ValueError, match="positive"):  # SegmenterError is also a ValueError
        get_segmenter("baseline", mpp=-1.0)
    assert issubclass(SegmenterError, NucscaleError)


def test_public_names() -> None:
    assert set(infer.__all__) == {
        "Segmenter",
        "Segmentation",
        "Calibration",
        "BaselineSegmenter",
        "get_segmenter",
        "SEGMENTERS",
    }


def test_unet_defaults_to_the_shipped_weights() -> None:
    from nucscale.models._checkpoint import sha256_file
    from nucscale.models.unet import default_weights

    seg = get_segmenter("unet")
    assert seg.name == "unet"
    assert seg.native_mpp == 0.5
    assert seg.describe()["weights_sha256"] == sha256_file(default_weights())
    # halo rule: 128 px of post-processing context plus the largest nucleus, at any tile size
    # (the instance stage reads stored maps: the patch grid and its margin play no part)
    assert (seg.context, seg.min_halo) == (128, 256)


def test_unet_with_a_missing_weights_file() -> None:
    with pytest.raises(SegmenterError, match="weights file not found"):
        get_segmenter("unet", weights="/nonexistent/unet.pt")


def test_bioimageio_segmenter_from_the_package(bioimageio_unet: Path) -> None:
    seg = get_segmenter("bioimageio", weights=str(bioimageio_unet), mpp=0.5, modality="brightfield")
    assert seg.native_mpp == 0.5 and seg.name == "unet-2d-nuclei-broad"
    assert seg.batch_size == 1  # the package fixes its batch size to 1
    # halo: post-processing context + largest nucleus, whatever the 448 px patch grid
    assert seg.default_tile == 2048 and seg.min_halo == 120 + 120
    info = seg.describe()
    assert info["weights_format"] in ("onnx", "torchscript") and len(info["weights_sha256"]) == 64
    assert info["input_signal"] == "haematoxylin" and info["mpp_source"] == "--analysis-mpp"
    with pytest.raises(SegmenterError, match=r"no pixel size.*pass --analysis-mpp"):
        get_segmenter("bioimageio", weights=str(bioimageio_unet))
