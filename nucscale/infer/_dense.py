"""``DenseSegmenter``: any :class:`~nucscale.models._base.DenseModel` behind ``Segmenter``.

Maps come from the sliding-window engine over the window's valid region; the model's own
post-processing turns them into instances; the result is placed back in window coordinates
with ``valid`` set, so the pipeline's ownership rule treats the valid region's edge as the
window's edge (except where it is the image's own edge: given the image's extent, no patch is
computed beyond it).
"""

from __future__ import annotations

import time

import numpy as np

from nucscale.infer._engine import predict_region
from nucscale.infer._segmenter import Calibration, Segmentation, Segmenter
from nucscale.models._base import DenseModel


class DenseSegmenter(Segmenter):
    """Segmenter running a dense network through the global-grid sliding window."""

    def __init__(self, model: DenseModel, *, batch_size: int = 8) -> None:
        self.model = model
        self.batch_size = batch_size
        self.name = model.name
        self.native_mpp = model.mpp
        self.accelerated = True
        self.type_names = dict(model.type_names)
        spec = model.spec
        # the valid region may start up to margin + output - 1 px inside the window
        self.context = spec.margin + spec.output_size - 1 + model.postprocess_context
        self.max_nucleus_diameter = model.max_nucleus_diameter
        self.grid_alignment = (spec.output_size, spec.margin)
        # the halo (288 px for the shipped U-Net) is recomputed by every neighbour: on a 20k²
        # slide it is 55 % of the network's pixels at 1024 px cores, 35 % at 2048 px
        # (benchmarks/exactness.py halo_share)
        self.default_tile = 2048
        # valid maps must reach this far beyond a core: an owned nucleus extends up to its
        # diameter past the core, and its labels depend on maps postprocess_context around it
        self._needed = model.postprocess_context + model.max_nucleus_diameter

    def _reach(self, halo: int, tile: int) -> int:
        """How far beyond its core a tile's valid maps extend, in the worst case.

        When ``tile`` is a multiple of the output size, every core starts on the patch grid and
        the window's first patch sits ``(halo - margin) mod output`` px later than it could; in
        general it may sit up to ``output - 1`` px later. Window ends are snapped to the grid
        (:class:`~nucscale.tiling.TileGrid` ``align``), so the far side reaches as far.
        """
        out, m = self.model.spec.output_size, self.model.spec.margin
        if tile % out == 0:
            return (halo - m) // out * out
        return halo - m - out + 1

    def halo_suffices(self, halo: int, tile: int) -> bool:
        return self._reach(halo, tile) >= self._needed

    def halo_for(self, tile: int) -> int:
        out, m = self.model.spec.output_size, self.model.spec.margin
        if tile % out == 0:
            return m + -(-self._needed // out) * out
        return self.min_halo

    def calibrate(self, tissue_rgb: np.ndarray, tissue_mask: np.ndarray) -> Calibration:
        """The model's slide-level statistics (:meth:`DenseModel.calibrate`), once per slide."""
        return Calibration(self.model.calibrate(tissue_rgb, tissue_mask))

    def segment(
        self,
        rgb: np.ndarray,
        calibration: Calibration,
        origin: tuple[int, int] = (0, 0),
        extent: tuple[int, int] | None = None,
    ) -> Segmentation:
        """Segment ``rgb`` whose top-left is global pixel ``origin``; given the image's
        ``extent``, maps are computed only over patches that overlap the image."""
        t0 = time.perf_counter()
        maps, valid = predict_region(
            self.model,
            rgb,
            origin,
            batch_size=self.batch_size,
            extent=extent,
            calibration=calibration.values,
        )
        model_s = time.perf_counter() - t0
        labels = np.zeros(rgb.shape[:2], np.int32)
        x0, y0, x1, y1 = valid
        if x1 <= x0 or y1 <= y0:
            empty = np.zeros(0)
            return Segmentation(
                labels, empty.astype(np.int16), empty.astype(np.float32), valid, model_s
            )
        inner = self.model.postprocess(maps)
        labels[y0:y1, x0:x1] = inner.labels
        return Segmentation(labels, inner.types, inner.probs, valid, model_s)

    def describe(self) -> dict[str, str]:
        return {
            "segmenter": self.name,
            "model_mpp": f"{self.model.mpp:.6g}",
            "patch_input": str(self.model.spec.input_size),
            "patch_output": str(self.model.spec.output_size),
            "weights_sha256": self.model.weights_sha256,
            **self.model.describe(),
        }
