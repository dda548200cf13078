"""Building blocks of HoVer-Net, named so state dicts match the public PyTorch release.

The official release (github.com/vqdang/hover_net, ``models/hovernet/net_utils.py``) names
sub-modules with slashes (``"preact/bn"``, ``"conv1/bn"``, ``"conv2/pad"``); a released
checkpoint's keys are those names, so the blocks here keep them verbatim. The code is written
from the architecture, not copied: a pre-activated ResNet bottleneck group, a DenseNet group with
``valid`` convolutions, TensorFlow-style ``same`` padding and nearest 2x upsampling.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` of an NCHW tensor (extra odd pixel off the end)."""
    dy = x.shape[2] - height
    dx = x.shape[3] - width
    top, left = dy // 2, dx // 2
    return x[:, :, top : top + height, left : left + width]


class TFSamePad(nn.Module):
    """Zero padding that reproduces TensorFlow ``padding="same"`` for a square kernel."""

    def __init__(self, ksize: int, stride: int) -> None:
        super().__init__()
        self.ksize = ksize
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rem = x.shape[2] % self.stride
        pad = max(self.ksize - (self.stride if rem == 0 else rem), 0)
        before = pad // 2
        after = pad - before
        return F.pad(x, (before, after, before, after))


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=1e-5)


class ResidualGroup(nn.Module):
    """A group of pre-activated bottleneck units (official ``ResidualBlock``; ``d0``..``d3``).

    Unit ``i`` is ``[preact/bn, preact/relu,] conv1 (1x1), conv1/bn, conv1/relu, conv2/pad,
    conv2 (3x3, stride on unit 0), conv2/bn, conv2/relu, conv3 (1x1)``; unit 0 has no
    pre-activation because its input already went through the previous group's ``blk_bna``.
    The group ends with ``blk_bna`` (batch norm + ReLU).
    """

    def __init__(
        self, in_ch: int, ksizes: list[int], chs: list[int], count: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        unit_in = in_ch
        for i in range(count):
            s = stride if i == 0 else 1
            layers: list[tuple[str, nn.Module]] = []
            if i > 0:
                layers += [("preact/bn", _bn(unit_in)), ("preact/relu", nn.ReLU(inplace=True))]
            layers += [
                ("conv1", nn.Conv2d(unit_in, chs[0], ksizes[0], bias=False)),
                ("conv1/bn", _bn(chs[0])),
                ("conv1/relu", nn.ReLU(inplace=True)),
                ("conv2/pad", TFSamePad(ksizes[1], s)),
                ("conv2", nn.Conv2d(chs[0], chs[1], ksizes[1], stride=s, bias=False)),
                ("conv2/bn", _bn(chs[1])),
                ("conv2/relu", nn.ReLU(inplace=True)),
                ("conv3", nn.Conv2d(chs[1], chs[2], ksizes[2], bias=False)),
            ]
            self.units.append(nn.Sequential(OrderedDict(layers)))
            unit_in = chs[2]
        self.shortcut: nn.Module | None = None
        if in_ch != chs[2] or stride != 1:
            self.shortcut = nn.Conv2d(in_ch, chs[2], 1, stride=stride, bias=False)
        self.blk_bna = nn.Sequential(
            OrderedDict([("bn", _bn(chs[2])), ("relu", nn.ReLU(inplace=True))])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        for unit in self.units:
            x = unit(x) + residual
            residual = x
        return self.blk_bna(x)


class DenseGroup(nn.Module):
    """DenseNet units with ``valid`` convolutions (official ``DenseBlock``; ``u3/u2.dense``).

    Each unit is ``preact_bna/bn, preact_bna/relu, conv1 (1x1), conv1/bn, conv1/relu, conv2
    (k x k, grouped)``; its output is concatenated to the centre crop of its input.
    """

    def __init__(
        self, in_ch: int, ksizes: list[int], chs: list[int], count: int, split: int = 1
    ) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        unit_in = in_ch
        for _ in range(count):
            layers: list[tuple[str, nn.Module]] = [
                ("preact_bna/bn", _bn(unit_in)),
                ("preact_bna/relu", nn.ReLU(inplace=True)),
                ("conv1", nn.Conv2d(unit_in, chs[0], ksizes[0], bias=False)),
                ("conv1/bn", _bn(chs[0])),
                ("conv1/relu", nn.ReLU(inplace=True)),
                ("conv2", nn.Conv2d(chs[0], chs[1], ksizes[1], groups=split, bias=False)),
            ]
            self.units.append(nn.Sequential(OrderedDict(layers)))
            unit_in += chs[1]
        self.out_ch = unit_in
        self.blk_bna = nn.Sequential(
            OrderedDict([("bn", _bn(unit_in)), ("relu", nn.ReLU(inplace=True))])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            new = unit(x)
            x = torch.cat([center_crop(x, new.shape[2], new.shape[3]), new], dim=1)
        return self.blk_bna(x)


class UpSample2x(nn.Module):
    """Nearest-neighbour 2x upsampling by a fixed 2x2 kernel (buffer ``unpool_mat``, all ones).

    The buffer exists because the official module has it (it is in every released checkpoint).
    """

    unpool_mat: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("unpool_mat", torch.ones(2, 2, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = x[:, :, :, None, :, None] * self.unpool_mat[:, None, :]
        return out.reshape(n, c, h * 2, w * 2)


def decoder_branch(out_ch: int, ksize: int) -> nn.Sequential:
    """One decoder branch (``np``, ``hv`` or ``tp``): ``u3``, ``u2``, ``u1``, ``u0``."""
    u3 = nn.Sequential(
        OrderedDict(
            [
                ("conva", nn.Conv2d(1024, 256, ksize, bias=False)),
                ("dense", DenseGroup(256, [1, ksize], [128, 32], 8, split=4)),
                ("convf", nn.Conv2d(512, 512, 1, bias=False)),
            ]
        )
    )
    u2 = nn.Sequential(
        OrderedDict(
            [
                ("conva", nn.Conv2d(512, 128, ksize, bias=False)),
                ("dense", DenseGroup(128, [1, ksize], [128, 32], 4, split=4)),
                ("convf", nn.Conv2d(256, 256, 1, bias=False)),
            ]
        )
    )
    u1 = nn.Sequential(
        OrderedDict(
            [
                ("conva/pad", TFSamePad(ksize, 1)),
                ("conva", nn.Conv2d(256, 64, ksize, bias=False)),
            ]
        )
    )
    u0 = nn.Sequential(
        OrderedDict(
            [
                ("bn", _bn(64)),
                ("relu", nn.ReLU(inplace=True)),
                ("conv", nn.Conv2d(64, out_ch, 1, bias=True)),
            ]
        )
    )
    return nn.Sequential(OrderedDict([("u3", u3), ("u2", u2), ("u1", u1), ("u0", u0)]))
