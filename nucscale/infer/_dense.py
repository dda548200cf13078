"""``DenseSegmenter``: any :class:`~nucscale.contracts.DenseModel` behind ``Segmenter``.

Maps come from the sliding-window engine over the window's valid region; the model's own
post-processing turns them into instances; the result is placed back in window coordinates
with ``valid`` set, so the pipeline's ownership rule treats the valid region's edge as the
window's edge (except where it is the image's own edge: given the image's extent, no patch is
computed beyond it).
"""

from __future__ import annotations

import time

import numpy as np

from nucscale.contracts import Calibration, DenseModel, Segmentation, Segmenter
from nucscale.infer._engine import patch_grid, predict_patches, predict_region
from nucscale.tiling._grid import Box


class DenseSegmenter(Segmenter):
    """Segmenter running a dense network through the global-grid sliding window."""

    def __init__(self, model: DenseModel, *, batch_size: int | None = None) -> None:
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

    # -- the two-stage graph: maps once per patch (forward), instances per window ------------
    def input_box(self, starts: list[tuple[int, int]]) -> Box:
        """The image pixels the patches at ``starts`` read (their outputs and the margin)."""
        out, m = self.model.spec.output_size, self.model.spec.margin
        ys, xs = [y for y, _ in starts], [x for _, x in starts]
        return Box(min(xs) - m, min(ys) - m, max(xs) + out + m, max(ys) + out + m)

    def forward(
        self, rgb: np.ndarray, origin: tuple[int, int], starts: list[tuple[int, int]],
        calibration: Calibration,
    ) -> np.ndarray:  # fmt: skip
        """(N, K, out, out) maps of the patches at global ``starts``, from ``rgb`` whose
        top-left is global pixel ``origin`` (x, y) and which holds :meth:`input_box`."""
        ox, oy = origin
        local = [(y - oy, x - ox) for y, x in starts]
        return predict_patches(self.model, rgb, local, batch_size=self.batch_size,
                               calibration=calibration.values)  # fmt: skip

    def valid_box(self, window: Box, extent: tuple[int, int]) -> Box | None:
        """The global region of a window whose maps come from whole patches inside it (what
        :meth:`segment` computes for that window); None when no patch fits."""
        out, m = self.model.spec.output_size, self.model.spec.margin
        xs = patch_grid(window.x0, window.width, out, m, extent[0])
        ys = patch_grid(window.y0, window.height, out, m, extent[1])
        if not xs or not ys:
            return None
        return Box(xs[0], ys[0], xs[-1] + out, ys[-1] + out)

    def instances(self, maps: np.ndarray, valid: Box | None, window: Box) -> Segmentation:
        """Instances of ``window`` from the ``maps`` over its :meth:`valid_box`: the same
        result :meth:`segment` gives for that window, without running the network."""
        labels = np.zeros((window.height, window.width), np.int32)
        if valid is None:
            empty = np.zeros(0)
            return Segmentation(labels, empty.astype(np.int16), empty.astype(np.float32),
                                (0, 0, 0, 0))  # fmt: skip
        x0, y0 = valid.x0 - window.x0, valid.y0 - window.y0
        inner = self.model.postprocess(maps)
        labels[y0 : y0 + valid.height, x0 : x0 + valid.width] = inner.labels
        box = (x0, y0, x0 + valid.width, y0 + valid.height)
        return Segmentation(labels, inner.types, inner.probs, box)

    def describe(self) -> dict[str, str]:
        return {
            "segmenter": self.name,
            "model_mpp": f"{self.model.mpp:.6g}",
            "patch_input": str(self.model.spec.input_size),
            "patch_output": str(self.model.spec.output_size),
            "weights_sha256": self.model.weights_sha256,
            **self.model.describe(),
        }
