"""A real pretrained network through the whole pipeline: bioimage.io UNet 2D Nuclei Broad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nucscale.analysis import panoptic_quality
from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.store import open_labels, read_metadata

pytestmark = pytest.mark.slow


def test_bioimageio_package_on_a_fluorescence_png(
    bioimageio_unet: Path, dsb2018: Path, tmp_path: Path
) -> None:
    image = dsb2018 / "0a849e0eb15f_image.png"  # 256 x 256 fluorescence field, 50 nuclei
    slides, rejected = resolve_inputs([str(image)], mpp=0.5)
    # the package declares no pixel size: the analysis pixel size is the network's
    settings = Settings(segmenter="bioimageio", weights=str(bioimageio_unet), mpp=0.5)
    with get_client(workers=1, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings, tmp_path)
    assert rows[0].status == "done", rows[0].error
    meta = read_metadata(tmp_path / "nuclei" / "slide_id=0a849e0eb15f_image" / "part-0.parquet")
    assert meta["modality"] == "fluorescence"  # detected: the dark field was not discarded
    assert meta["segmenter"] == "unet-2d-nuclei-broad"
    assert meta["input_signal"] == "brightest" and meta["mpp_source"] == "--analysis-mpp"
    import torch

    # default: ONNX on a CPU-only process (faster there), TorchScript where torch has a GPU
    fmt, sha = (
        ("torchscript", "a4b0659a1b48454588b12179855ad0a0c9b69ccaa89b8bb06e6271e8f60b02fe")
        if torch.cuda.is_available()
        else ("onnx", "85f5ac80fa977fea3562ef97c8c5950288be2c4f4cdb5d994807df97008ce088")
    )
    assert (meta["weights_format"], meta["weights_sha256"]) == (fmt, sha)
    # the image's own mean and std, once (the package's zero_mean_unit_variance over x, y)
    assert float(meta["calibration.zero_mean_unit_variance[1].mean"].strip("[]")) > 0
    labels = open_labels(tmp_path, "0a849e0eb15f_image")[:]
    gt = np.asarray(Image.open(dsb2018 / "0a849e0eb15f_labels.png"))
    assert labels.shape == gt.shape
    # measured PQ 0.62 (35 of 50 matched, 43 found) with statistics of the whole image; the old
    # per-patch normalisation of the hand-written card gave PQ 0.49 here
    assert panoptic_quality(gt, labels)["pq"] > 0.55
    assert rows[0].nuclei == len(np.unique(labels)) - 1 and 35 <= rows[0].nuclei <= 55


def test_hovernet_checkpoint_through_the_pipeline(cmu1_svs: Path, tmp_path: Path) -> None:
    """An official-format checkpoint ({"desc": state dict}, "module." keys) runs end to end.

    The released weights cannot be had here, so the weights are seeded random ones: this checks
    loading, geometry, types and outputs, not segmentation quality.
    """
    import torch

    from nucscale.io import open_slide, write_flat_tiff
    from nucscale.models.hovernet import HoVerNetModule

    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in HoVerNetModule("fast", 6).state_dict().items()}
    ckpt = tmp_path / "hovernet_fast_pannuke_type_tf2pytorch.tar"
    torch.save({"desc": state, "epoch": 50}, ckpt)
    with open_slide(cmu1_svs) as s:
        region = s.read_region(0, 1000, 500, 96, 96)
    slide = tmp_path / "cmu1-crop.tif"
    write_flat_tiff(region, slide, mpp=0.25)  # a 40x-sized crop: no resampling needed
    settings = Settings(segmenter="hovernet", weights=str(ckpt), tissue="none", tile=128)
    slides, rejected = resolve_inputs([str(slide)])
    with get_client(workers=1, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings, tmp_path / "out")
    assert rows[0].status == "done", rows[0].error
    assert rows[0].analysis_mpp == 0.25
    part = tmp_path / "out" / "nuclei" / "slide_id=cmu1-crop" / "part-0.parquet"
    meta = read_metadata(part)
    assert meta["segmenter"] == "hovernet-fast-pannuke"
    # run by OpenVINO where installed (here), in float32
    assert meta["cpu_runtime"].startswith("openvino ") and meta["cpu_precision"] == "float32"
    assert meta["patch_input"] == "256" and meta["patch_output"] == "164"
    assert int(meta["halo"]) == 16 + 80  # post-processing context + largest nucleus
    labels = open_labels(tmp_path / "out", "cmu1-crop")
    assert labels.shape == (96, 96)
    import pyarrow.parquet as pq

    names = set(pq.read_table(part).column("type_name").to_pylist())
    pannuke = {"neoplastic", "inflammatory", "connective", "dead", "non-neoplastic epithelial"}
    assert names <= pannuke | {"background"}
