"""The contracts between nucscale's stages, in one place that imports no implementation.

- :class:`Segmenter`: RGB tile with halo -> instance labels + type and probability
  (:class:`Segmentation`), with slide-level parameters from :class:`Calibration`. A segmenter
  must be *translation consistent* (DESIGN.md invariant 1): its output at a pixel depends only
  on the image within ``context`` pixels of it, never on where the tile starts. Anything global
  (a threshold, a stain vector) is computed once per slide by ``calibrate`` from the
  low-resolution tissue image and handed to every tile as ``calibration``.
- :class:`DenseModel` with its :class:`PatchSpec`: a dense-prediction network maps a square RGB
  patch of ``spec.input_size`` px to ``K`` dense maps over its central ``spec.output_size`` px
  (the margin ``(input - output) / 2`` is context the network consumes, e.g. HoVer-Net fast
  mode 256 -> 164). The engine (``nucscale.infer._engine``) tiles a window with patches on a
  *global* grid aligned to ``output_size``, so every output pixel is computed from the same
  input pixels whichever tile asks, and hands the maps to ``DenseModel.postprocess``, which
  turns them into instances. Anything a model's input transform needs from the whole slide
  comes from ``DenseModel.calibrate`` (once per slide) and is handed to ``preprocess`` for
  every patch; a statistic of the patch itself would differ between tiles.
- :data:`WORKER_MODULES`: what a slide's tasks import in a worker. Whoever starts workers
  loads them in advance (the cohort in every worker it uses, the ``nucscale`` command in the
  process its local workers fork from); named here, as strings, because learning them from the
  pipeline would import it.

Implementations live in ``nucscale.infer`` (the baseline, the dense segmenter, the engine, the
registry) and ``nucscale.models`` (the networks and their post-processing); both import these
contracts and ``models`` imports nothing from ``infer``. torch is imported for type checking
only.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: What the tasks of a slide import in a worker (torch, scikit-image, the readers, the default
#: model, pyarrow and the pandas it loads to convert arrays): loaded when a worker starts or the
#: cohort starts, not in its first task (:mod:`nucscale.cluster._warm`,
#: :mod:`nucscale.cluster._forks`).
WORKER_MODULES = (
    "nucscale.pipeline._tasks",
    "nucscale.models.unet",
    "tifffile",
    "imagecodecs",
    "pandas",
)


@dataclass(frozen=True)
class Segmentation:
    """Instances found in one image.

    Attributes
    ----------
    labels:
        (h, w) int32, 0 is background, instances are 1..n (every value present).
    types:
        (n,) int16, ``types[i]`` is the type of label ``i + 1``.
    probs:
        (n,) float32, probability of that type.
    valid:
        (x0, y0, x1, y1) of the part of ``labels`` the segmenter could compute (a dense model
        only covers whole patches of its global grid); ``None`` means all of it. The pipeline
        treats the edge of this region as the window's edge for ownership.
    model_s:
        Seconds of network forward passes (patch preparation and transfer included); 0 for a
        segmenter without a network. What is not model time is post-processing.
    """

    labels: np.ndarray
    types: np.ndarray
    probs: np.ndarray
    valid: tuple[int, int, int, int] | None = None
    model_s: float = 0.0

    @property
    def count(self) -> int:
        return int(self.types.shape[0])


@dataclass(frozen=True)
class Calibration:
    """Slide-level parameters a segmenter derives once per slide; plain values, picklable."""

    values: Mapping[str, Any] = field(default_factory=dict)


class Segmenter(abc.ABC):
    """Finds nuclei in an RGB uint8 image at the segmenter's pixel size.

    Class attributes
    ----------------
    name:
        Registry name, recorded in the output metadata.
    context:
        Pixels of image around a pixel that its output may depend on.
    max_nucleus_diameter:
        Largest nucleus it can return, in pixels (instances larger than this are dropped).
    native_mpp:
        Pixel size the segmenter was built for (a trained network's), or ``None`` when it takes
        an ``mpp`` parameter and adapts its pixel sizes to the analysis pixel size.
    type_names:
        Names of the instance types it returns.
    accelerated:
        Whether it runs a network that a GPU speeds up (its tasks then ask for a ``GPU``
        resource on clusters that have GPU workers).
    default_tile:
        Tile core size used when the settings give none. Larger tiles spend less of their
        work on the halo (which is computed again by the neighbours) but hold more in memory.
    """

    name: str = "abstract"
    context: int = 0
    max_nucleus_diameter: int = 0
    type_names: Mapping[int, str] = {}  # read-only class default
    native_mpp: float | None = None
    accelerated: bool = False
    default_tile: int = 1024

    @property
    def min_halo(self) -> int:
        """Smallest halo that makes tiled output equal whole-image output (DESIGN invariant 1)
        for any tile size."""
        return self.context + self.max_nucleus_diameter

    def calibrate(self, tissue_rgb: np.ndarray, tissue_mask: np.ndarray) -> Calibration:
        """Slide-level parameters from the low-resolution image and its tissue mask."""
        return Calibration()

    @abc.abstractmethod
    def segment(
        self,
        rgb: np.ndarray,
        calibration: Calibration,
        origin: tuple[int, int] = (0, 0),
        extent: tuple[int, int] | None = None,
    ) -> Segmentation:
        """Segment ``rgb`` (h, w, 3) uint8 whose top-left is global pixel ``origin`` (x, y).

        ``extent`` is the whole image's (width, height) when known: a segmenter may skip work
        beyond it (what lies there is padding, and nuclei there are dropped anyway), as long as
        its output inside the image stays the same in every window.
        """

    def describe(self) -> dict[str, str]:
        """Key-value provenance recorded in the Parquet metadata."""
        return {"segmenter": self.name}


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
    cpu_batch_size:
        Patches per forward pass on the CPU (a GPU takes 8): a thin network's activations
        stay in the CPU's caches only in small batches.
    openvino_batch_size:
        Patches per forward pass when OpenVINO runs the network on the CPU (0: as
        ``cpu_batch_size``).
    weights_sha256:
        Hash of the weights file, for provenance ("" for none).
    n_maps:
        Maps per pixel that ``forward`` returns, where the model knows it without running
        (0: the engine learns it from one forward pass of a noise patch).
    """

    name: str = "abstract"
    mpp: float = 0.5
    spec: PatchSpec = PatchSpec(256, 256)
    module: torch.nn.Module
    type_names: Mapping[int, str] = {1: "nucleus"}
    postprocess_context: int = 0
    max_nucleus_diameter: int = 40
    channels_last_cpu: bool = False
    cpu_batch_size: int = 8
    openvino_batch_size: int = 0
    weights_sha256: str = ""
    n_maps: int = 0

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
    def postprocess(
        self, maps: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Segmentation:
        """(K, h, w) float maps of a region (float16 as the maps store keeps them, or
        float32) -> instances in that region; the same instances for either when the float32
        values are the float16 ones.

        ``region``: (x0, y0, x1, y1), half-open, in the maps' pixels: the caller keeps only
        instances whose centroid lies in it, so an instance whose bounding box misses it may be
        left out (and its work skipped); every other instance is as without ``region``.
        ``None``: all instances."""

    def describe(self) -> dict[str, str]:
        """Model-specific provenance added to the segmenter's (none by default)."""
        return {}

    def openvino_graph(self, batch: int, side: int) -> Any:
        """The network (``module``, logits out) as an ``openvino.Model`` for float32 input of
        shape (batch, C, side, side), for CPU workers that run it with OpenVINO
        (:mod:`nucscale.infer._openvino`): one result, or one per output of a module that
        returns a dict, named by its keys; ``None`` (the default): torch runs it."""
        return None
