"""Mass segmentation of mammograms: a U-Net on the preprocessed mammogram (the CBIS-DDSM
method), its probability thresholded and brought back to the mammogram's own pixels.

Weights file (``torch.save`` of plain containers, read with ``weights_only``)::

    {"task": "mammogram-mass", "config": UNet config, "state_dict": ...,
     "size": 256, "threshold": 0.5, "preprocess": "cbis/v1", "trained_on": "..."}
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nucscale.archive._mammo import Prepared, invert_geometry, preprocess
from nucscale.archive._read import Mammogram
from nucscale.errors import SegmenterError
from nucscale.models._checkpoint import safe_load
from nucscale.models.unet import UNet

TASK = "mammogram-mass"
PREPROCESS = "cbis/v1"


def is_mammogram_weights(path: str | PathLike[str]) -> bool:
    """Whether a weights file holds a mammogram mass model (cheap enough to ask per run)."""
    try:
        data = safe_load(path)
    except SegmenterError:
        return False
    return isinstance(data, dict) and data.get("task") == TASK


@dataclass
class MammogramModel:
    """A loaded mass model; :meth:`segment` takes a decoded mammogram."""

    net: UNet
    size: int
    threshold: float
    source: str

    @classmethod
    def load(cls, path: str | PathLike[str]) -> MammogramModel:
        data = safe_load(path)
        if not isinstance(data, dict) or data.get("task") != TASK:
            raise SegmenterError(f"{path}: not a mammogram mass model (task {TASK!r})")
        if data.get("preprocess") != PREPROCESS:
            raise SegmenterError(
                f"{path}: preprocessing {data.get('preprocess')!r}, this nucscale does "
                f"{PREPROCESS!r}"
            )
        net = UNet(**data["config"])
        net.load_state_dict(data["state_dict"])
        net.eval()
        return cls(net, int(data["size"]), float(data["threshold"]), str(Path(path)))

    def prepare(self, m: Mammogram) -> Prepared:
        return preprocess(m.pixels, size=self.size, photometric=m.photometric,
                          bits_stored=m.bits_stored, window=m.window,
                          laterality=m.laterality)  # fmt: skip

    def probability(self, network_input: np.ndarray) -> np.ndarray:
        """(size, size) float32 probability of mass."""
        x = torch.from_numpy(np.ascontiguousarray(network_input, np.float32))[None, None]
        with torch.inference_mode():
            return torch.sigmoid(self.net(x))[0, 0].numpy()

    def segment(self, m: Mammogram) -> tuple[np.ndarray, Prepared]:
        """The mass mask (uint8 0/1) on the mammogram's own pixels, and its preprocessing."""
        prepared = self.prepare(m)
        probability = invert_geometry(self.probability(prepared.network), prepared.geometry, 1)
        return (probability >= self.threshold).astype(np.uint8), prepared


def weights_dict(net: UNet, size: int, threshold: float, trained_on: str) -> dict[str, Any]:
    """The weights file's content for a trained net."""
    return {
        "task": TASK,
        "config": dict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "size": size,
        "threshold": threshold,
        "preprocess": PREPROCESS,
        "trained_on": trained_on,
    }
