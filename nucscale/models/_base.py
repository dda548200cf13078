"""The contract between a dense-prediction network and the sliding-window engine.

A :class:`DenseModel` maps a square RGB patch of ``spec.input_size`` px to ``K`` dense maps over
its central ``spec.output_size`` px (the margin ``(input - output) / 2`` is context the network
consumes, e.g. HoVer-Net fast mode 256 -> 164). The engine (``nucscale.infer._engine``) tiles a
window with patches on a *global* grid aligned to ``output_size``, so every output pixel is
computed from the same input pixels whichever tile asks (DESIGN invariant 1), stitches the maps,
and hands them to :meth:`DenseModel.postprocess`, which turns maps into instances.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

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

    @abc.abstractmethod
    def preprocess(self, patches: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, C, H, W) float32 network input (on the CPU)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> (N, K, output_size, output_size) float maps (probabilities etc.)."""

    @abc.abstractmethod
    def postprocess(self, maps: np.ndarray) -> Segmentation:
        """(K, h, w) float32 maps of a region -> instances in that region."""
