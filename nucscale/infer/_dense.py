"""``DenseSegmenter``: any :class:`~nucscale.contracts.DenseModel` behind ``Segmenter``.

Two ways to one result. :meth:`DenseSegmenter.segment` runs the sliding-window engine over an
image's patches and post-processes their maps at once (whole images: evaluation, archives).
The slide pipeline splits the same work in two stages: :meth:`~DenseSegmenter.forward`
computes each patch of the global grid once and stores its maps; per tile,
:meth:`~DenseSegmenter.instances` post-processes the stored maps over the tile's whole window
(:meth:`~DenseSegmenter.valid_box`). Either way the result is placed in window coordinates with
``valid`` set, so the pipeline's ownership rule treats the valid region's edge as the window's
edge (except where it is the image's own edge).

The engine (torch) is imported by the methods that run the network, not with this module: the
``nucscale`` command's own process imports the pipeline to check and submit slides, never runs
a network, and holds 0.19 GiB less without torch (its workers import it while it checks).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from nucscale.contracts import Calibration, DenseModel, Segmentation, Segmenter
from nucscale.infer._precision import checked, checked_runtime, openvino_version
from nucscale.tiling import maps_extent
from nucscale.tiling._grid import Box


class DenseSegmenter(Segmenter):
    """Segmenter running a dense network through the global-grid sliding window.

    ``precision``: the network's arithmetic on the CPU, ``float32`` or ``bfloat16``;
    ``runtime``: what runs it there, ``torch`` or ``openvino`` (:mod:`._precision`; both fixed
    when built, so every window of a slide gets the same)."""

    def __init__(
        self,
        model: DenseModel,
        *,
        batch_size: int | None = None,
        precision: str = "float32",
        runtime: str = "torch",
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.precision = checked(precision)
        self.runtime = checked_runtime(runtime)
        self.name = model.name
        self.native_mpp = model.mpp
        self.accelerated = True
        self.type_names = dict(model.type_names)
        # the instance stage reads stored maps over its whole window (:meth:`valid_box`), so
        # the halo only has to cover an owned nucleus (up to its diameter past the core) and
        # the maps its labels depend on (postprocess_context around it); the patch grid and
        # its margin play no part: 256 px for the shipped U-Net at any tile size
        self.context = model.postprocess_context
        self.max_nucleus_diameter = model.max_nucleus_diameter
        self.default_tile = 2048

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
        from nucscale.infer._engine import predict_region  # torch, once a network runs

        t0 = time.perf_counter()
        maps, valid = predict_region(
            self.model,
            rgb,
            origin,
            batch_size=self.batch_size,
            extent=extent,
            calibration=calibration.values,
            precision=self.precision,
            runtime=self.runtime,
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
    ) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:  # fmt: skip
        """The maps of the patches at global ``starts``, batch by batch: (their starts, their
        (n, K, out, out) maps), from ``rgb`` whose top-left is global pixel ``origin`` (x, y)
        and which holds :meth:`input_box`."""
        from nucscale.infer._engine import iter_patches  # torch, once a network runs

        ox, oy = origin
        local = [(y - oy, x - ox) for y, x in starts]
        done = 0
        for maps in iter_patches(self.model, rgb, local, batch_size=self.batch_size,
                                 calibration=calibration.values,
                                 precision=self.precision, runtime=self.runtime):  # fmt: skip
            yield starts[done : done + len(maps)], maps
            done += len(maps)

    def valid_box(self, window: Box, extent: tuple[int, int]) -> Box | None:
        """The global region of a window whose stored maps the instance stage reads: the
        window within the maps store (the image's ``extent`` rounded up to whole patches);
        None when they do not meet."""
        height, width = maps_extent(*extent, self.model.spec.output_size)
        return window.intersect(Box(0, 0, width, height))

    def instances(
        self, maps: np.ndarray, valid: Box | None, window: Box, core: Box | None = None
    ) -> Segmentation:
        """Instances of ``window`` from the stored ``maps`` over its :meth:`valid_box`: a
        nucleus's labels depend only on the maps within ``context`` of it, and every patch's
        maps are the same whichever tile reads them, so any window holding that neighbourhood
        gives the same nucleus (DESIGN invariant 1); no network runs here. ``core``: the tile's
        core (global pixels), where the caller keeps nuclei by their centroid; instances whose
        box misses it may be left out (``DenseModel.postprocess``'s ``region``)."""
        shape = (window.height, window.width)
        if valid is None:
            empty = np.zeros(0)
            return Segmentation(np.zeros(shape, np.int32), empty.astype(np.int16),
                                empty.astype(np.float32), (0, 0, 0, 0))  # fmt: skip
        x0, y0 = valid.x0 - window.x0, valid.y0 - window.y0
        region = None
        if core is not None:
            region = (core.x0 - valid.x0, core.y0 - valid.y0, core.x1 - valid.x0,
                      core.y1 - valid.y0)  # fmt: skip
        inner = self.model.postprocess(maps, region)
        labels = inner.labels.astype(np.int32, copy=False)
        if labels.shape != shape:  # the window reaches past the maps: a window-sized copy
            labels = np.zeros(shape, np.int32)
            labels[y0 : y0 + valid.height, x0 : x0 + valid.width] = inner.labels
        box = (x0, y0, x0 + valid.width, y0 + valid.height)
        return Segmentation(labels, inner.types, inner.probs, box)

    def _runtime_name(self) -> str:
        """The runtime for provenance, with OpenVINO's version."""
        if self.runtime == "openvino":
            return f"openvino {openvino_version()}"
        return self.runtime

    def describe(self) -> dict[str, str]:
        return {
            "segmenter": self.name,
            "model_mpp": f"{self.model.mpp:.6g}",
            "patch_input": str(self.model.spec.input_size),
            "patch_output": str(self.model.spec.output_size),
            "weights_sha256": self.model.weights_sha256,
            "cpu_precision": self.precision,
            "cpu_runtime": self._runtime_name(),
            **self.model.describe(),
        }
