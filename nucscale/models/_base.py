"""The contract between a dense-prediction network and the sliding-window engine.

A :class:`DenseModel` maps a square RGB patch of ``spec.input_size`` px to ``K`` dense maps over
its central ``spec.output_size`` px (the margin ``(input - output) / 2`` is context the network
consumes, e.g. HoVer-Net fast mode 256 -> 164). The engine (``nucscale.infer._engine``) tiles a
window with patches on a *global* grid aligned to ``output_size``, so every output pixel is
computed from the same input pixels whichever tile asks (DESIGN invariant 1), stitches the maps,
and hands them to :meth:`DenseModel.postprocess`, which turns maps into instances.

Anything a model's input transform needs from the whole slide (an intensity range, a mean and
variance) comes from :meth:`DenseModel.calibrate`, computed once per slide from the plan's
low-resolution image, and is handed to :meth:`DenseModel.preprocess` for every patch; a
statistic of the patch itself would differ between tiles and break translation consistency.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nucscale.infer._segmenter import Segmentation


@dataclass(frozen=True)
class PatchSpec:
    """Input and output patch sizes of a network, in pixels at the model's pixel size."""

    input_size: int
    output_size: int

    @property
    def margin(self) -> int:
        return (self.input_size - self.output_size) // 2


class DenseModel(abc.ABC):
    """A torch network plus its pre- and post-processing.

    Attributes
    ----------
    name:
        Registry / provenance name (e.g. ``"hovernet-fast-pannuke"``).
    mpp:
        Pixel size the network expects, µm/px.
    spec:
        Patch geometry.
    module:
        The ``torch.nn.Module`` (eval mode); the engine moves it to a device.
    type_names:
        Instance type id -> name.
    postprocess_context:
        Pixels of map around a pixel that post-processing may look at.
    max_nucleus_diameter:
        Largest instance post-processing returns, px.
    channels_last_cpu:
        Run channels-last on the CPU too (always on CUDA).
    weights_sha256:
        Hash of the weights file, for provenance ("" for none).
    """

    name: str = "abstract"
    mpp: float = 0.5
    spec: PatchSpec = PatchSpec(256, 256)
    module: torch.nn.Module
    type_names: Mapping[int, str] = {1: "nucleus"}
    postprocess_context: int = 0
    max_nucleus_diameter: int = 40
    channels_last_cpu: bool = False
    weights_sha256: str = ""

    def calibrate(self, thumb: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        """Slide-level statistics the input transform needs, from the low-resolution image
        ``thumb`` (h, w, 3) uint8 and its tissue mask (plain values; none by default)."""
        return {}

    @abc.abstractmethod
    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, C, H, W) float32 network input (on the CPU), using
        the slide's ``calibration`` (:meth:`calibrate`) where the transform needs one."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> (N, K, output_size, output_size) float maps (probabilities etc.)."""

    @abc.abstractmethod
    def postprocess(self, maps: np.ndarray) -> Segmentation:
        """(K, h, w) float32 maps of a region -> instances in that region."""

    def describe(self) -> dict[str, str]:
        """Model-specific provenance added to the segmenter's (none by default)."""
        return {}
