"""HoVer-Net (Graham et al., MedIA 2019), compatible with the public PyTorch release.

The network is written here from the paper and the architecture of github.com/vqdang/hover_net
(``models/hovernet/net_desc.py``, checked at commit 67e2ce5e): its state-dict keys equal the
official ones (``conv0./.weight``, ``d0.units.0.conv1.weight``,
``decoder.np.u3.dense.units.0.preact_bna/bn.weight``, ``upsample2x.unpool_mat``...), so the
released PanNuke / CoNSeP / MoNuSAC checkpoints load strictly.

Geometry (as the official forward):

- ``fast`` (PanNuke, MoNuSAC): 256 px in, 164 px out; ``conv0`` pads TF-``same``, decoder
  kernels are 3x3, the skip features ``d0`` / ``d1`` are centre-cropped by 92 / 36 px.
- ``original`` (CoNSeP, Kumar, CPM17): 270 px in, 80 px out; ``conv0`` is ``valid``, decoder
  kernels 5x5, crops 184 / 72 px.

Input: RGB as float in [0, 255]; the network divides by 255 itself, as the official one does.

Output of :meth:`HoVerNet.forward` (channel order, ``K = 3`` or ``3 + nr_types``):

0. ``np``: nucleus probability (softmax of the NP branch, channel 1)
1. ``hv_x``: horizontal distance map, [-1, 1]
2. ``hv_y``: vertical distance map, [-1, 1]
3. ``tp_0 .. tp_{nr_types-1}``: type probabilities (softmax of the NC branch), present only
   when ``nr_types`` is set.

The official ``infer_step`` instead concatenates ``[tp_argmax, np, hv_x, hv_y]``; keeping the
probabilities lets the sliding-window engine stitch maps before any argmax.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from os import PathLike
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nucscale.contracts import DenseModel, PatchSpec, Segmentation
from nucscale.errors import SegmenterError
from nucscale.models._checkpoint import load_checkpoint, load_strict, sha256_file
from nucscale.models._hovernet_blocks import (
    ResidualGroup,
    TFSamePad,
    UpSample2x,
    center_crop,
    decoder_branch,
)
from nucscale.models._hovernet_post import hovernet_instances
from nucscale.models._types import type_names

log = logging.getLogger(__name__)

Mode = Literal["fast", "original"]

#: mode -> (input px, output px, decoder kernel, d0 crop, d1 crop)
_GEOMETRY: dict[str, tuple[int, int, int, int, int]] = {
    "fast": (256, 164, 3, 92, 36),
    "original": (270, 80, 5, 184, 72),
}


class HoVerNetModule(nn.Module):
    """The HoVer-Net network; ``forward`` returns the raw logits per branch (official names)."""

    def __init__(self, mode: Mode = "fast", nr_types: int | None = None, input_ch: int = 3):
        super().__init__()
        if mode not in _GEOMETRY:
            raise SegmenterError(f"unknown HoVer-Net mode {mode!r}; use 'fast' or 'original'")
        self.mode = mode
        self.nr_types = nr_types
        _, _, ksize, self._crop0, self._crop1 = _GEOMETRY[mode]
        stem: list[tuple[str, nn.Module]] = [
            ("/", nn.Conv2d(input_ch, 64, 7, bias=False)),
            ("bn", nn.BatchNorm2d(64, eps=1e-5)),
            ("relu", nn.ReLU(inplace=True)),
        ]
        if mode == "fast":
            stem.insert(0, ("pad", TFSamePad(7, 1)))
        self.conv0 = nn.Sequential(OrderedDict(stem))
        self.d0 = ResidualGroup(64, [1, 3, 1], [64, 64, 256], 3, stride=1)
        self.d1 = ResidualGroup(256, [1, 3, 1], [128, 128, 512], 4, stride=2)
        self.d2 = ResidualGroup(512, [1, 3, 1], [256, 256, 1024], 6, stride=2)
        self.d3 = ResidualGroup(1024, [1, 3, 1], [512, 512, 2048], 3, stride=2)
        self.conv_bot = nn.Conv2d(2048, 1024, 1, bias=False)
        branches: list[tuple[str, nn.Module]] = []
        if nr_types is not None:
            branches.append(("tp", decoder_branch(nr_types, ksize)))
        branches += [("np", decoder_branch(2, ksize)), ("hv", decoder_branch(2, ksize))]
        self.decoder = nn.ModuleDict(OrderedDict(branches))
        self.upsample2x = UpSample2x()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) RGB in [0, 255] -> branch name -> (N, C, h, w) logits."""
        x = imgs / 255.0
        d0 = self.d0(self.conv0(x))
        d1 = self.d1(d0)
        d2 = self.d2(d1)
        d3 = self.conv_bot(self.d3(d2))
        d0 = center_crop(d0, d0.shape[2] - self._crop0, d0.shape[3] - self._crop0)
        d1 = center_crop(d1, d1.shape[2] - self._crop1, d1.shape[3] - self._crop1)
        out: dict[str, torch.Tensor] = {}
        for name, branch in self.decoder.items():
            u3, u2, u1, u0 = branch.children()
            y = u3(self.upsample2x(d3) + d2)
            y = u2(self.upsample2x(y) + d1)
            y = u1(self.upsample2x(y) + d0)
            out[name] = u0(y)
        return out


class HoVerNet(DenseModel):
    """HoVer-Net behind the :class:`DenseModel` contract.

    Parameters
    ----------
    mode:
        ``"fast"`` (256 -> 164 px; PanNuke, MoNuSAC weights) or ``"original"`` (270 -> 80 px;
        CoNSeP, Kumar, CPM17 weights).
    nr_types:
        Channels of the type (NC) branch, background included (PanNuke 6, CoNSeP 5, MoNuSAC 5);
        ``None`` for a segmentation-only model (no ``tp`` branch).
    type_set:
        ``"pannuke"``, ``"consep"``, ``"monusac"`` or ``None`` (generic names).
    weights:
        Checkpoint path (official ``{"desc": state_dict}`` or a bare state dict), loaded with
        ``weights_only=True`` and strict key matching; ``None`` keeps random weights.
    mpp:
        Pixel size the weights were trained at; the released ones are 40x, ~0.25 µm/px.
    normalise:
        HV post-processing normalisation (see ``hovernet_instances`` in
        ``nucscale.models._hovernet_post``); ``"fixed"`` (default) keeps tiled inference
        translation consistent, ``"global"`` is the official whole-map min-max.
    """

    postprocess_context = 16  # Sobel radius 10 + blur 1 + opening 2, rounded up
    max_nucleus_diameter = 80  # px at 0.25 µm/px = 20 µm
    # oneDNN's channels-last convolutions: a batch of 8 fast-mode patches takes 22.5 s instead
    # of 28.2 s on 2 CPU cores (maps differ by float rounding, ~1e-4, the same in every window)
    channels_last_cpu = True
    # OpenVINO computes a patch as fast alone as in a batch (fast mode, one thread: 1.35 s per
    # patch at batch 1 against 1.43 s at 8) and holds a quarter of the activations: a forward
    # process's peak 1.02 against 2.27 GiB, and a tile of few patches pads no batch
    openvino_batch_size = 1

    def __init__(
        self,
        mode: Mode = "fast",
        nr_types: int | None = 6,
        type_set: str | None = "pannuke",
        weights: str | PathLike[str] | None = None,
        mpp: float = 0.25,
        *,
        np_threshold: float = 0.5,
        min_area: int = 10,
        normalise: Literal["fixed", "global"] = "fixed",
    ) -> None:
        if nr_types is not None and nr_types < 2:
            raise SegmenterError(
                f"nr_types must be >= 2 (background included) or None, got {nr_types}"
            )
        self.type_names = type_names(type_set, nr_types)
        self.nr_types = nr_types
        self.mode = mode
        self.module = HoVerNetModule(mode, nr_types)
        self.n_maps = 3 + (nr_types or 0)  # [np, hv_x, hv_y, tp_0..] (module doc)
        size_in, size_out = _GEOMETRY[mode][:2]
        self.spec = PatchSpec(size_in, size_out)
        self.mpp = float(mpp)
        self.name = f"hovernet-{mode}-{type_set or ('seg' if nr_types is None else 'types')}"
        self.np_threshold = np_threshold
        self.min_area = min_area
        self.normalise = normalise
        self.weights_sha256 = ""
        if weights is not None:
            state = load_checkpoint(weights)
            load_strict(self.module, state, weights)
            self.weights_sha256 = sha256_file(weights)
        else:
            log.info("%s: no weights given, network is randomly initialised", self.name)
        self.module.eval()

    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 in [0, 255] (the net scales itself;
        no slide statistics)."""
        if patches.ndim != 4 or patches.shape[-1] != 3:
            raise SegmenterError(f"expected (N, H, W, 3) RGB patches, got shape {patches.shape}")
        return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> (N, K, out, out) maps: ``[np, hv_x, hv_y, tp_0..]`` (module doc)."""
        out = self.module(x)
        maps = [torch.softmax(out["np"], dim=1)[:, 1:2], out["hv"]]
        if "tp" in out:
            maps.append(torch.softmax(out["tp"], dim=1))
        return torch.cat(maps, dim=1)

    def openvino_graph(self, batch: int, side: int) -> Any:
        """The network as an OpenVINO graph (:func:`._hovernet_openvino.hovernet_graph`): one
        result per branch, the module's logits."""
        from nucscale.models._hovernet_openvino import hovernet_graph

        return hovernet_graph(self.module, batch, side)

    def postprocess(
        self, maps: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Segmentation:
        """(K, h, w) maps -> instances (official marker-controlled watershed + type vote)."""
        maps = np.asarray(maps, np.float32)  # its filters work in float32 / float64
        tp = maps[3:] if self.nr_types is not None else None
        return hovernet_instances(
            maps[0],
            maps[1:3],
            tp,
            np_threshold=self.np_threshold,
            min_area=self.min_area,
            normalise=self.normalise,
            region=region,
        )
