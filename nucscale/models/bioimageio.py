"""bioimage.io model packages as dense models (``nucscale run SLIDE --model bioimageio``).

A package (a folder, its ``bioimageio.yaml``/``rdf.yaml``, or a ``.zip``) is read with the
``bioimageio.spec`` library (:mod:`nucscale.models._bioimageio_package`, which says what that
library does offline) and run as the package declares it:

Input
    The RGB patch becomes the network's channels: 3 channels -> RGB as it is; 1 channel -> the
    nuclear signal: on a fluorescence slide its brightest channel (as :mod:`._unet_input`
    does), on a brightfield slide the haematoxylin density (``rgb2hed`` channel 0, 0.3 -> 255),
    which shows nuclei bright on a dark background as a network trained on fluorescence expects.
    Other channel counts are refused. Axes are reordered to the declared order; a fixed batch
    size of 1 is honoured (the segmenter then runs one patch at a time).
Pre-processing
    The declared ops (:mod:`._bioimageio_ops`), with every statistic computed once per slide
    by :meth:`BioImageIOModel.calibrate` from the plan's low-resolution image: over all its
    pixels on a fluorescence slide (the dark background is part of what such a network saw in
    training), over the tissue mask on a brightfield slide (glass is not what an H&E crop shows).
Geometry
    Patch size: the valid input size (fixed, or ``min + n * step``) nearest 512 px. The output's
    ``halo`` is discarded: ``PatchSpec(input, input + offset - 2 * halo)``.
Weights
    TorchScript (``torch.jit.load``) or ONNX (ONNX Runtime), read from the package with their
    sha256 checked against the package's. Default: ONNX when the package has it and this
    process has no GPU, else TorchScript. Measured on this 2-core machine while a training run
    used ~1.4 cores (``benchmarks/models.py --models bioimageio --size 1024``, 9 patches of
    512 px, best of 3): 1 thread TorchScript 2.65 s, ONNX 2.13 s; 2 threads 3.03 s and 2.83 s;
    the same 286 nuclei either way.
Pixel size
    The space axes' physical scale when the package gives one (unit + scale); otherwise the
    caller must say (``mpp``, from ``--analysis-mpp``): the package does not know it, and a
    guessed scale would silently change every nucleus's size.
Instances
    The foreground probability channel through :func:`~._watershed.watershed_instances` with
    fixed parameters (threshold 0.5, h 1.0, min 20 px, max diameter 120 px by default).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from nucscale.contracts import DenseModel, PatchSpec, Segmentation
from nucscale.errors import SegmenterError
from nucscale.models._bioimageio_axes import Tiling
from nucscale.models._bioimageio_ops import apply_ops, calibrate_ops
from nucscale.models._bioimageio_package import FORMATS, Package, load_package, read_weights
from nucscale.models._runtime import OnnxModule, describe_runtime, load_torchscript
from nucscale.models._watershed import watershed_instances

log = logging.getLogger(__name__)

SIGNALS = ("rgb", "brightest", "haematoxylin")
MODALITIES = ("brightfield", "fluorescence")
#: rgb2hed haematoxylin value shown as full scale (255); nuclei on CMU-1 reach 0.1-0.3.
H_FULL_SCALE = 0.3
#: Patch size aimed at when the package allows a range.
TARGET_PATCH = 512


def input_signal(rgb: np.ndarray, signal: str) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W, C) float32 network channels (0..255 scale)."""
    if signal == "rgb":
        return rgb.astype(np.float32)
    if signal == "brightest":
        return rgb.max(axis=-1, keepdims=True).astype(np.float32)
    from skimage.color import rgb2hed

    h = rgb2hed(rgb, channel_axis=-1)[..., :1] * (255.0 / H_FULL_SCALE)
    return np.clip(h, 0.0, 255.0).astype(np.float32)


def choose_signal(channels: int, modality: str, where: str) -> str:
    """How the RGB patch becomes ``channels`` network channels on a slide of ``modality``."""
    if channels == 3:
        return "rgb"
    if channels == 1:
        return "haematoxylin" if modality == "brightfield" else "brightest"
    raise SegmenterError(
        f"{where}: the input has {channels} channels; nucscale feeds 1 (the nuclear signal) "
        "or 3 (RGB)"
    )


def choose_patch_size(tiling: Tiling, offset: int, halo: int, target: int = TARGET_PATCH) -> int:
    """The valid input size nearest ``target`` (the larger on a tie) whose output, less the
    halo, is not empty."""
    if tiling.step == 0:
        return tiling.min
    n = max(0, round((target - tiling.min) / tiling.step))
    size = tiling.min + n * tiling.step
    while size + offset - 2 * halo <= 0:
        size += tiling.step
    return size


def _layout(x: torch.Tensor, axes: tuple[str, ...]) -> torch.Tensor:
    """(N, C, H, W) -> the declared axis order (batch kept first when the package has none)."""
    kinds = axes if "b" in axes else ("b", *axes)
    src = "bcyx"
    if "c" not in kinds:
        x, src = x[:, 0], "byx"
    return x.permute([src.index(k) for k in kinds])


def _canonical(y: torch.Tensor, axes: tuple[str, ...]) -> torch.Tensor:
    """The declared axis order (batch first when the package has none) -> (N, C, H, W)."""
    kinds = list(axes if "b" in axes else ("b", *axes))
    if "c" not in kinds:
        y, kinds = y.unsqueeze(-1), [*kinds, "c"]
    return y.permute([kinds.index(k) for k in "bcyx"])


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "bioimageio"


class BioImageIOModel(DenseModel):
    """A bioimage.io model package behind the :class:`DenseModel` contract.

    Parameters
    ----------
    package:
        The package: a folder, its YAML file, or a ``.zip``.
    mpp:
        Pixel size the network works at, µm/px. Required when the package's space axes give no
        physical scale; when they do, theirs is used (a different ``mpp`` is logged).
    modality:
        ``"fluorescence"`` or ``"brightfield"``: the slide's (the pipeline passes it); decides
        the 1-channel input signal and the pixels statistics are taken over.
    weights_format:
        ``"torchscript"`` or ``"onnx"``; default ONNX when the package has it and this process
        has no GPU (measured faster on the CPU), else TorchScript.
    foreground_channel:
        Output channel holding the nucleus probability.
    threshold, h, min_size, max_diameter:
        :func:`watershed_instances` parameters (px at the model's pixel size).
    patch_size:
        Input size aimed at when the package allows a range (the nearest valid one is used).
    """

    def __init__(
        self,
        package: str | Path,
        *,
        mpp: float | None = None,
        modality: str = "fluorescence",
        weights_format: str | None = None,
        foreground_channel: int = 0,
        threshold: float = 0.5,
        h: float = 1.0,
        min_size: int = 20,
        max_diameter: int = 120,
        patch_size: int = TARGET_PATCH,
    ) -> None:
        if modality not in MODALITIES:
            raise SegmenterError(f"bioimageio: modality must be one of {MODALITIES}")
        pkg = load_package(package)
        self.package = pkg
        if pkg.mpp is None and mpp is None:
            raise SegmenterError(
                f"{pkg.yaml}: the package declares no pixel size; pass --analysis-mpp (the "
                "µm/px the network was trained at)"
            )
        if pkg.mpp is not None and mpp is not None and abs(mpp - pkg.mpp) > 0.05 * pkg.mpp:
            log.warning(
                "%s: analysing at %g µm/px; the package's pixel size is %g µm/px",
                pkg.yaml,
                mpp,
                pkg.mpp,
            )
        self.mpp = float(pkg.mpp if pkg.mpp is not None else mpp)  # type: ignore[arg-type]
        self.mpp_source = "package" if pkg.mpp is not None else "--analysis-mpp"
        self.modality = modality
        self.signal = choose_signal(pkg.channels, modality, pkg.yaml)
        if not 0 <= foreground_channel < pkg.out_channels:
            raise SegmenterError(
                f"{pkg.yaml}: foreground channel {foreground_channel} not among the output's "
                f"{pkg.out_channels}"
            )
        size = choose_patch_size(pkg.tiling, pkg.offset, pkg.halo, patch_size)
        self.spec = PatchSpec(size, size + pkg.offset - 2 * pkg.halo)
        self.weights_format = self._format(pkg, weights_format)
        data, self.weights_sha256 = read_weights(package, self.weights_format)
        where = f"{pkg.yaml} ({self.weights_format} weights)"
        if self.weights_format == "torchscript":
            self.module: torch.nn.Module = load_torchscript(data, where)
        else:
            self.module = OnnxModule(data, where)
        onnx_batch = getattr(self.module, "fixed_batch", None)
        self.batch_size = pkg.batch or onnx_batch or 8
        self.name = pkg.id or _slug(pkg.name)
        self.type_names = {1: "nucleus"}
        self.foreground_channel = foreground_channel
        self.threshold, self.h, self.min_size = float(threshold), float(h), int(min_size)
        self.max_nucleus_diameter = int(max_diameter)
        self.postprocess_context = int(max_diameter)

    @staticmethod
    def _format(pkg: Package, asked: str | None) -> str:
        if asked is not None and asked not in FORMATS:
            raise SegmenterError(f"bioimageio: weights format must be one of {FORMATS}")
        present = [f for f in FORMATS if f in pkg.weights]
        if asked is not None and asked not in present:
            raise SegmenterError(
                f"{pkg.yaml}: no {asked} weights in the package (it has: "
                f"{', '.join([*present, *pkg.other_formats])})"
            )
        if not present:
            raise SegmenterError(
                f"{pkg.yaml}: no TorchScript or ONNX weights (the package has: "
                f"{', '.join(pkg.other_formats)}); nucscale runs those two formats"
            )
        if asked is not None:
            return asked
        if torch.cuda.is_available() and "torchscript" in present:
            return "torchscript"  # torch runs it on the GPU; ONNX Runtime may have no CUDA
        return "onnx" if "onnx" in present else present[0]  # ONNX: faster on the CPU

    def calibrate(self, thumb: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        """Every statistic of the pre-processing, once per slide, from its low-resolution image
        (tissue pixels on brightfield, all pixels on fluorescence)."""
        x = torch.from_numpy(input_signal(thumb[None], self.signal)).permute(0, 3, 1, 2)
        select = mask if self.modality == "brightfield" and mask.any() else None
        ids = self.package.axis_ids["input"]
        return dict(calibrate_ops(self.package.preprocessing, x, select, ids))

    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, C, H, W) network input, pre-processed with the slide's
        ``calibration`` (the declared axis order is applied in :meth:`forward`)."""
        x = torch.from_numpy(input_signal(patches, self.signal)).permute(0, 3, 1, 2)
        ids = self.package.axis_ids["input"]
        return apply_ops(self.package.preprocessing, x, ids, calibration).contiguous()

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pre-processed input -> (N, K, h, w) post-processed output, whole (the
        halo not yet removed)."""
        pkg = self.package
        declared = _layout(x, pkg.input_axes)
        if "b" not in pkg.input_axes or pkg.batch == 1:
            if "b" in pkg.input_axes:
                parts = [self.module(declared[i : i + 1]) for i in range(declared.shape[0])]
                y = torch.cat(parts)
            else:
                y = torch.stack([self.module(d) for d in declared])
        else:
            y = self.module(declared)
        y = _canonical(y, pkg.output_axes)
        return apply_ops(pkg.postprocessing, y, pkg.axis_ids["output"]).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> maps over the central ``output_size`` px (the halo cut off)."""
        y = self.run_network(x)
        h, out = self.package.halo, self.spec.output_size
        return y[:, :, h : h + out, h : h + out]

    def run_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """The package's own computation on a raw tensor in its declared input layout (e.g. its
        test input): statistics of each sample itself, output in the declared output layout."""
        pkg = self.package
        x = _canonical(torch.from_numpy(np.asarray(tensor, np.float32)), pkg.input_axes)
        ids = pkg.axis_ids["input"]
        outs = []
        with torch.inference_mode():
            for sample in x.split(1):
                calib = calibrate_ops(pkg.preprocessing, sample, None, ids)
                outs.append(self.run_network(apply_ops(pkg.preprocessing, sample, ids, calib)))
        y = _layout(torch.cat(outs), pkg.output_axes)
        return y.numpy() if "b" in pkg.output_axes else y[0].numpy()

    def postprocess(
        self, maps: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Segmentation:
        """Foreground probability > threshold -> distance-transform watershed instances (all of
        them: ``region`` is not used)."""
        prob = np.asarray(maps[self.foreground_channel], np.float32)  # cut-off in float32
        labels = watershed_instances(
            prob,
            threshold=self.threshold,
            h=self.h,
            min_size=self.min_size,
            max_diameter=self.max_nucleus_diameter,
        )
        n = int(labels.max())
        probs = (
            np.asarray(ndi.mean(prob, labels, np.arange(1, n + 1)), np.float32)
            if n
            else np.zeros(0, np.float32)
        )
        return Segmentation(labels, np.ones(n, np.int16), probs)

    def describe(self) -> dict[str, str]:
        """Provenance: the package, its weights format and runtime, the input and pixel size."""
        return {
            "bioimageio_package": str(Path(self.package.source).resolve()),
            "bioimageio_name": self.package.name,
            "weights_format": self.weights_format,
            "runtime": describe_runtime(self.module),
            "input_signal": self.signal,
            "mpp_source": self.mpp_source,
            "model_license": self.package.license,
        }
