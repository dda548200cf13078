"""HoVer-Net (:class:`~nucscale.models.hovernet.HoVerNetModule`) as an OpenVINO graph, for CPU
workers (:mod:`nucscale.infer._openvino`).

Built node by node from the network's weights with OpenVINO's operator set, in well under a
second: ``openvino.convert_model`` traced the torch module for 17 s, paid again by every worker
process, and printed tracer warnings on the console. The graph is the module's computation,
layer for layer: each convolution followed by a batch norm takes it folded into its weights and
bias; a batch norm on its own (the pre-activations, ``blk_bna``, ``u0/bn``) is a per-channel
scale and shift; TensorFlow's ``same`` padding becomes the convolution's own (asymmetric) zero
padding, computed from the graph's static shape as :class:`._hovernet_blocks.TFSamePad` does;
the dense units' grouped convolutions are OpenVINO group convolutions, their centre crops and
the skip crops slices; the 2x upsampling multiplies by the checkpoint's ``unpool_mat`` as the
module does. The graph returns one result per decoder branch (``tp``, ``np``, ``hv``, the
module's order and names): the module's raw logits, which :meth:`HoVerNet.forward` turns into
maps as before. Float32 logits equal the module's to ~1e-5 relative
(``tests/models/test_hovernet_openvino.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from nucscale.models._hovernet_blocks import DenseGroup, ResidualGroup, TFSamePad
from nucscale.models._openvino_graph import GraphBuilder, weights


def _affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """An eval-mode batch norm as (scale, shift) per channel, computed in float64."""
    scale = weights(bn.weight) / np.sqrt(weights(bn.running_var) + bn.eps)
    return scale, weights(bn.bias) - weights(bn.running_mean) * scale


def _same_pads(size: int, ksize: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``same`` padding before and after, as :class:`TFSamePad` pads."""
    rem = size % stride
    pad = max(ksize - (stride if rem == 0 else rem), 0)
    return pad // 2, pad - pad // 2


class _Builder(GraphBuilder):
    """HoVer-Net's blocks over :class:`GraphBuilder`'s operators."""

    def scale_shift(self, x: Any, bn: nn.BatchNorm2d) -> Any:
        scale, shift = _affine(bn)
        return self.add_bias(self.ops.multiply(x, self.const(scale.reshape(1, -1, 1, 1))), shift)

    def bn_relu(self, x: Any, bn: nn.BatchNorm2d) -> Any:
        return self.ops.relu(self.scale_shift(x, bn))

    def conv(
        self,
        x: Any,
        conv: nn.Conv2d,
        pads: tuple[int, int] = (0, 0),
        bn: nn.BatchNorm2d | None = None,
    ) -> Any:
        """``conv`` (its own zero padding ``pads`` before / after on both axes), then ``bn``
        folded into its weights and bias."""
        weight = weights(conv.weight)
        bias = weights(conv.bias) if conv.bias is not None else None
        if bn is not None:
            scale, shift = _affine(bn)
            weight = weight * scale[:, None, None, None]
            bias = shift if bias is None else bias * scale + shift
        stride = int(conv.stride[0])
        return self.convolve(x, weight, bias, stride=stride, pads=pads, groups=conv.groups)

    def same_conv(self, x: Any, pad: TFSamePad, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Any:
        """``pad`` then ``conv`` then ``bn``: the padding by the input's static height."""
        return self.conv(x, conv, _same_pads(self.shape(x)[2], pad.ksize, pad.stride), bn)

    def crop(self, x: Any, height: int, width: int) -> Any:
        """The centre ``height x width`` (:func:`._hovernet_blocks.center_crop`)."""
        _, _, h, w = self.shape(x)
        top, left = (h - height) // 2, (w - width) // 2
        return self.ops.slice(
            x,
            np.array([top, left], np.int64),
            np.array([top + height, left + width], np.int64),
            np.array([1, 1], np.int64),
            np.array([2, 3], np.int64),
        )

    def upsample(self, x: Any, unpool: np.ndarray) -> Any:
        """Nearest 2x, as :class:`._hovernet_blocks.UpSample2x`: each pixel times the 2x2
        ``unpool`` matrix."""
        n, c, h, w = self.shape(x)
        grid = self.ops.reshape(x, np.array([n, c, h, 1, w, 1], np.int64), False)
        out = self.ops.multiply(grid, self.const(unpool.reshape(1, 1, 1, 2, 1, 2)))
        return self.ops.reshape(out, np.array([n, c, 2 * h, 2 * w], np.int64), False)

    def residual(self, x: Any, group: ResidualGroup) -> Any:
        projection: Any = group.shortcut
        shortcut = x if projection is None else self.conv(x, projection)
        for unit in group.units:
            layers: dict[str, Any] = dict(unit.named_children())
            y = x
            if "preact/bn" in layers:
                y = self.bn_relu(y, layers["preact/bn"])
            y = self.ops.relu(self.conv(y, layers["conv1"], bn=layers["conv1/bn"]))
            y = self.same_conv(y, layers["conv2/pad"], layers["conv2"], layers["conv2/bn"])
            y = self.conv(self.ops.relu(y), layers["conv3"])
            x = shortcut = self.ops.add(y, shortcut)
        out_bn: Any = group.blk_bna.bn
        return self.bn_relu(x, out_bn)

    def dense(self, x: Any, group: DenseGroup) -> Any:
        for unit in group.units:
            layers: dict[str, Any] = dict(unit.named_children())
            y = self.bn_relu(x, layers["preact_bna/bn"])
            y = self.ops.relu(self.conv(y, layers["conv1"], bn=layers["conv1/bn"]))
            y = self.conv(y, layers["conv2"])
            _, _, h, w = self.shape(y)
            x = self.ops.concat([self.crop(x, h, w), y], 1)
        out_bn: Any = group.blk_bna.bn
        return self.bn_relu(x, out_bn)

    def decode(self, branch: nn.Sequential, d: list[Any], unpool: np.ndarray) -> Any:
        """One decoder branch over the skips ``d`` = [d0, d1, d2, d3] (cropped, ``d3`` after
        ``conv_bot``), as :meth:`HoVerNetModule.forward`."""
        stages: list[Any] = list(branch.children())
        u3, u2, u1, u0 = stages
        y = self.ops.add(self.upsample(d[3], unpool), d[2])
        for stage, skip in ((u3, d[1]), (u2, d[0])):
            y = self.conv(self.dense(self.conv(y, stage.conva), stage.dense), stage.convf)
            y = self.ops.add(self.upsample(y, unpool), skip)
        pad = getattr(u1, "conva/pad")
        y = self.conv(y, u1.conva, _same_pads(self.shape(y)[2], pad.ksize, pad.stride))
        return self.conv(self.bn_relu(y, u0.bn), u0.conv)


def hovernet_graph(module: Any, batch: int, side: int) -> Any:
    """``module`` (a :class:`~nucscale.models.hovernet.HoVerNetModule` in eval mode) as an
    ``openvino.Model`` taking float32 RGB (batch, 3, side, side) in [0, 255] and returning each
    decoder branch's logits, named as the module's branches."""
    from nucscale._offline import import_openvino

    ov = import_openvino()  # without its telemetry, before any openvino submodule
    import openvino.opset13 as ops

    b = _Builder(ops)
    x_in = ops.parameter([batch, 3, side, side], np.float32, name="imgs")
    x = ops.divide(x_in, b.const(np.array(255.0)))
    stem = dict(module.conv0.named_children())
    pads = (0, 0)
    if "pad" in stem:
        pads = _same_pads(side, stem["pad"].ksize, stem["pad"].stride)
    x = ops.relu(b.conv(x, stem["/"], pads, stem["bn"]))
    d0 = b.residual(x, module.d0)
    d1 = b.residual(d0, module.d1)
    d2 = b.residual(d1, module.d2)
    d3 = b.conv(b.residual(d2, module.d3), module.conv_bot)
    h0, h1 = b.shape(d0)[2], b.shape(d1)[2]
    skips = [
        b.crop(d0, h0 - module._crop0, h0 - module._crop0),
        b.crop(d1, h1 - module._crop1, h1 - module._crop1),
        d2,
        d3,
    ]
    unpool = weights(module.upsample2x.unpool_mat)
    results = []
    for name, branch in module.decoder.items():
        y = b.decode(branch, skips, unpool)
        y.output(0).get_tensor().set_names({name})
        results.append(ops.result(y))
    return ov.Model(results, [x_in], "nucscale-hovernet")
