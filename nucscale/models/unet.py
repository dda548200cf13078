"""A small U-Net (Ronneberger et al., MICCAI 2015) for nuclei in brightfield and fluorescence.

Network: ``depth`` resolution levels of two 3x3 conv + BatchNorm + ReLU blocks, 2x2 max-pool
down, 2x2 transposed-conv up, skip concatenation, a 1x1 head with ``out_channels`` logits.
All convolutions pad by 1 (``same``), so the output has the input's size (input sides must be
multiples of ``2 ** (depth - 1)``). BatchNorm runs on its running statistics at inference, so
a pixel's output never depends on per-patch statistics (GroupNorm/InstanceNorm would).

Geometry (:class:`UNetModel`): 576 px in, the central 512 px out (margin 32). Zero padding
makes the outermost pixels of a patch worse than the centre; only the centre is trusted, and
since the engine puts patches on a global grid aligned to the output size, every output pixel
is computed from the same input pixels whichever tile asks (DESIGN invariant 1). The pipeline
computes each patch once and post-processes the stored maps per tile window, so the halo only
covers the post-processing context and the largest nucleus: 256 px at any tile size. The
network is fully convolutional and its BatchNorm uses running statistics, so the patch size is
an engine choice, not the training's (256 px crops): 512 px outputs spend 1.27x the output's
pixels on input where 256 px spent 1.56x (19 % less computed per output pixel), and fewer
output pixels lie near a patch edge, where zero padding reaches them.

Input: one canonical look for both modalities (:mod:`nucscale.models._unet_input`): brightfield
as ``rgb / 255``, fluorescence as its nuclear signal scaled by the slide's intensity range
(computed once per slide by :meth:`UNetModel.calibrate`) and inverted, so nuclei are dark on a
bright background for the network either way. The slide's modality comes from the plan.

Output channels (sigmoid): 0 foreground probability, 1 boundary (instance contour)
probability, and (three-output weights) 2 the distance to the nucleus' edge divided by its
largest such distance (1 at its centre). :mod:`nucscale.models._unet_post` turns them into
instances; the weights file stores the post-processing thresholds and the plausibility rules
(smallest nucleus in µm²) that go with them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nucscale.contracts import DenseModel, PatchSpec, Segmentation
from nucscale.errors import SegmenterError
from nucscale.models._checkpoint import load_strict, safe_load, sha256_file
from nucscale.models._unet_input import (
    LEGACY_NORMALISATION,
    NORMALISATION,
    intensity_range,
    network_input,
)
from nucscale.models._unet_post import unet_instances

log = logging.getLogger(__name__)

MODALITIES = ("brightfield", "fluorescence")
#: Defaults of :class:`UNet`; the weights file's ``config`` overrides them.
DEFAULT_CONFIG: dict[str, int] = {"depth": 5, "width": 8, "in_channels": 3, "out_channels": 3}


def default_weights() -> Path:
    """Path of the packaged default weights (``nucscale/models/weights/unet-default.pt``)."""
    return Path(str(resources.files("nucscale.models") / "weights" / "unet-default.pt"))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``depth`` levels (channels ``width * 2**i``); returns logits, input size."""

    def __init__(
        self, depth: int = 5, width: int = 8, in_channels: int = 3, out_channels: int = 3
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or in_channels < 1 or out_channels < 1:
            raise SegmenterError(
                f"U-Net: depth, width and channels must be >= 1, got depth={depth}, "
                f"width={width}, in={in_channels}, out={out_channels}"
            )
        self.config = {
            "depth": depth,
            "width": width,
            "in_channels": in_channels,
            "out_channels": out_channels,
        }
        chans = [width * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.up.append(nn.ConvTranspose2d(c * 2, c, 2, stride=2))
            self.dec.append(_block(c * 2, c))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        #: the decoders' first convolutions take (upsampled, skip) apart (:func:`join_skips`)
        self.joined_skips = False

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return int(2 ** (len(self.down) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, H, W) logits."""
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = dec((up(x), skip) if self.joined_skips else torch.cat([up(x), skip], dim=1))
        return self.head(x)


class _SkipJoin(nn.Module):
    """``conv(cat([up, skip], 1))`` as ``conv_up(up) + conv_skip(skip)``: the convolution of
    a channel concatenation is the sum of the convolutions of its parts (the weights split
    by input channel). No concatenated copy is made: on the CPU in channels-last layout the
    concatenation was 14 % of the default U-Net's forward (``cProfile``, 8192² mosaic) and,
    allocated afresh every patch, half of a worker's page faults (``benchmarks/worker_malloc.py
    --settings per_task``: 0.58 M -> 0.30 M faults, 14.2 -> 13.2 s). Sums differ from the
    concatenated convolution's by float rounding only (logits ~1e-5)."""

    def __init__(self, conv: nn.Conv2d, first: int) -> None:
        super().__init__()
        weight = conv.weight.detach()
        self.up_weight = nn.Parameter(weight[:, :first].clone(), requires_grad=False)
        self.skip_weight = nn.Parameter(weight[:, first:].clone(), requires_grad=False)
        bias = conv.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        self.stride = conv.stride
        self.padding = cast(tuple[int, int], conv.padding)

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        up, skip = pair
        out = F.conv2d(up, self.up_weight, self.bias, self.stride, self.padding)
        out += F.conv2d(skip, self.skip_weight, None, self.stride, self.padding)
        return out


def join_skips(net: UNet) -> UNet:
    """Replace each decoder's first convolution by :class:`_SkipJoin`, in place; for
    inference (the pipeline's net, after :func:`fold_batchnorm`). The same computation for
    every patch, so tiles still equal whole images."""
    if net.joined_skips:
        return net
    for up, block in zip(net.up, net.dec, strict=True):
        assert isinstance(block, nn.Sequential) and isinstance(up, nn.ConvTranspose2d)
        first = block[0]
        assert isinstance(first, nn.Conv2d)
        block[0] = _SkipJoin(first, int(up.out_channels))
    net.joined_skips = True
    return net


def fold_batchnorm(net: UNet) -> UNet:
    """Fold every BatchNorm into the convolution before it, in place; for inference only.

    In eval mode BatchNorm is an affine map per channel, so ``conv -> bn`` equals one conv with
    rescaled weights and a bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``). At width 8 the
    BatchNorm passes were a fifth of the CPU forward time (memory-bound over thin tensors);
    folded, they cost nothing. The result differs from the unfolded net only by float
    rounding, and is the same computation for every patch, so tiles still equal whole images.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for blocks in (net.down, net.dec):
        for i, block in enumerate(blocks):
            layers = list(block.children())
            folded: list[nn.Module] = []
            for layer in layers:
                if isinstance(layer, nn.BatchNorm2d):
                    conv = folded.pop()
                    assert isinstance(conv, nn.Conv2d)
                    folded.append(fuse_conv_bn_eval(conv, layer))
                else:
                    folded.append(layer)
            blocks[i] = nn.Sequential(*folded)
    return net


def read_weights(path: str | PathLike[str]) -> dict[str, Any]:
    """Load a U-Net weights or training-checkpoint file (``weights_only=True``)."""
    p = Path(path)
    data = safe_load(p)
    if isinstance(data, dict) and "desc" in data and "state_dict" not in data:
        raise SegmenterError(
            f"{p}: a HoVer-Net checkpoint, not U-Net weights; use --model hovernet"
        )
    if not isinstance(data, dict) or "state_dict" not in data or "config" not in data:
        raise SegmenterError(f"{p}: expected a dict with 'state_dict' and 'config' (U-Net format)")
    norm = data.get("normalisation", LEGACY_NORMALISATION)
    if norm not in (NORMALISATION, LEGACY_NORMALISATION):
        raise SegmenterError(
            f"{p}: unknown input normalisation {norm!r}; this nucscale reads "
            f"{NORMALISATION!r} and {LEGACY_NORMALISATION!r}"
        )
    return data


class UNetModel(DenseModel):
    """The U-Net behind the :class:`DenseModel` contract (``name = "unet"``).

    Parameters
    ----------
    weights:
        A file holding ``{"state_dict", "config", "normalisation"}`` (a training checkpoint
        also works); default: the packaged ``unet-default.pt``. ``None`` with
        ``random_init=True`` keeps random weights of ``DEFAULT_CONFIG``.
    mpp:
        Pixel size the network works at; default: the weights file's ``"mpp"`` (what it was
        trained at), else 0.5.
    modality:
        ``"brightfield"`` or ``"fluorescence"``: how slides are turned into the network's input
        (:mod:`nucscale.models._unet_input`). The pipeline passes the slide's.
    fg_threshold, boundary_threshold, min_area:
        Post-processing parameters (:func:`nucscale.models._unet_post.unet_instances`);
        default: those stored in the weights file (``"postprocess"``: tuned on the training
        images; ``"plausibility"``: ``min_area_um2``), else 0.5 and 10 px.
    """

    name = "unet"
    spec = PatchSpec(576, 512)
    # watershed flooding stays inside one foreground component; instances wider than
    # max_nucleus_diameter are dropped, so a label depends on maps within about one diameter
    max_nucleus_diameter = 128  # 64 µm at 0.5 µm/px; the largest DSB 2018 nucleus is 56 µm
    postprocess_context = 128
    channels_last_cpu = True  # 1.5x faster on the CPU at width 8 (benchmarks/models.py)
    # one 576 px patch per CPU batch: its largest activation (16 channels at full size, 21 MB)
    # stays below glibc's 32 MiB mmap threshold, so the worker's heap reuses it; batches of 2
    # (42 MB) were mapped and unmapped every batch, their pages faulted in again: 8192² mosaic
    # 74.8-77.7 s against 65.7-67.8 s with 320 px patches in batches of 2, 6-16 s more kernel
    # time (README: the eighth session's 8192² A/B)
    cpu_batch_size = 1

    def __init__(
        self,
        weights: str | PathLike[str] | None = None,
        mpp: float | None = None,
        *,
        modality: str = "brightfield",
        random_init: bool = False,
        fg_threshold: float | None = None,
        boundary_threshold: float | None = None,
        min_area: int | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise SegmenterError(f"unet: modality must be one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.weights_sha256 = ""
        data: dict[str, Any] = {"normalisation": NORMALISATION}
        if weights is None and random_init:
            self.module = UNet(**DEFAULT_CONFIG)
            log.info("unet: randomly initialised")
        else:
            path = Path(weights) if weights is not None else default_weights()
            data = read_weights(path)
            config = {**DEFAULT_CONFIG, **{k: int(v) for k, v in data["config"].items()}}
            self.module = UNet(**config)
            state = {k: v.float() for k, v in data["state_dict"].items()}
            load_strict(self.module, state, path, "the weights' config must describe them")
            self.weights_sha256 = sha256_file(path)
        self.normalisation = str(data.get("normalisation", LEGACY_NORMALISATION))
        self.mpp = float(mpp if mpp is not None else data.get("mpp", 0.5))
        tuned = {k: float(v) for k, v in data.get("postprocess", {}).items()}
        rules = {k: float(v) for k, v in data.get("plausibility", {}).items()}
        self.plausibility = rules
        if min_area is None:
            min_um2 = rules.get("min_area_um2")
            min_area = 10 if min_um2 is None else max(1, int(np.ceil(min_um2 / self.mpp**2)))
        self.min_area = int(min_area)
        self.fg_threshold = tuned.get("fg_threshold", 0.5) if fg_threshold is None else fg_threshold
        self.boundary_threshold = (
            tuned.get("boundary_threshold", 0.5)
            if boundary_threshold is None
            else boundary_threshold
        )
        marker = tuned.get("min_marker")
        self.min_marker = int(marker) if marker is not None else None
        dist = tuned.get("dist_threshold")
        self.dist_threshold = float(dist) if dist is not None else None
        core = tuned.get("min_core")
        self.min_core = float(core) if core is not None else None
        if self.module.config["in_channels"] != 3:
            raise SegmenterError("unet: UNetModel takes RGB; in_channels must be 3")
        join_skips(fold_batchnorm(self.module))
        self.n_maps = int(self.module.config["out_channels"])

    def with_modality(self, modality: str) -> UNetModel:
        """The same network (shared, not copied) reading slides of another modality."""
        if modality not in MODALITIES:
            raise SegmenterError(f"unet: modality must be one of {MODALITIES}, got {modality!r}")
        other = copy.copy(self)
        other.modality = modality
        return other

    def openvino_graph(self, batch: int, side: int) -> Any:
        """The network as an OpenVINO graph (:func:`._unet_openvino.unet_graph`)."""
        from nucscale.models._unet_openvino import unet_graph

        return unet_graph(self.module, batch, side)

    def calibrate(self, thumb: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        """The slide's fluorescence intensity range (none for brightfield or old weights)."""
        if self.modality == "fluorescence" and self.normalisation == NORMALISATION:
            return intensity_range(thumb, mask)
        return {}

    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 in the canonical look (or
        ``rgb / 255`` for weights of the earlier normalisation)."""
        if patches.ndim != 4 or patches.shape[-1] != 3:
            raise SegmenterError(f"expected (N, H, W, 3) RGB patches, got shape {patches.shape}")
        if self.normalisation == LEGACY_NORMALISATION:
            return normalise(patches)
        x = network_input(patches, self.modality, calibration)
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 576, 576) -> (N, K, 512, 512) sigmoid maps: foreground, boundary (and the
        centre distance, for three-output weights)."""
        m = self.spec.margin
        out = torch.sigmoid(self.module(x))
        return out[:, :, m : out.shape[2] - m, m : out.shape[3] - m]

    def postprocess(
        self, maps: np.ndarray, region: tuple[int, int, int, int] | None = None
    ) -> Segmentation:
        """(K, h, w) maps -> instances (markers inside nuclei, watershed; see ``_unet_post``)."""
        return unet_instances(
            maps[0],
            maps[1],
            dist=maps[2] if maps.shape[0] > 2 else None,
            fg_threshold=self.fg_threshold,
            boundary_threshold=self.boundary_threshold,
            dist_threshold=self.dist_threshold,
            min_area=self.min_area,
            max_diameter=self.max_nucleus_diameter,
            min_marker=self.min_marker,
            min_core=self.min_core,
            region=region,
        )


def normalise(patches: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]; shared by training and inference."""
    t = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2)
    return t.float().div_(255.0)
