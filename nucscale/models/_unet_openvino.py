"""The inference U-Net (:class:`~nucscale.models.unet.UNet` after ``fold_batchnorm`` and
``join_skips``) as an OpenVINO graph, for CPU workers (:mod:`nucscale.infer._openvino`).

Built node by node from the network's weights with OpenVINO's operator set, in ~2 ms:
``openvino.convert_model`` of the torch module traced it for 1.6 s, paid by every worker
process. The graph is the module's computation, layer for layer: 3x3 convolutions (padding 1,
bias from the folded BatchNorm) and ReLU, 2x2 max-pool, 2x2 stride-2 transposed convolutions,
the decoders' split first convolutions summed (:class:`~nucscale.models.unet._SkipJoin`), the
1x1 head; its float32 logits equal the module's to ~1e-5 (``tests/models/test_unet.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from nucscale.errors import SegmenterError
from nucscale.models._openvino_graph import GraphBuilder, weights


def unet_graph(net: Any, batch: int, side: int) -> Any:
    """``net`` (an inference :class:`~nucscale.models.unet.UNet`) as an ``openvino.Model``
    taking float32 (batch, in_channels, side, side) and returning its logits."""
    from nucscale._offline import import_openvino
    from nucscale.models.unet import _SkipJoin

    ov = import_openvino()  # without its telemetry, before any openvino submodule
    import openvino.opset13 as ops

    if not net.joined_skips:
        raise SegmenterError("unet: the OpenVINO graph is built from the inference network")
    x_in = ops.parameter([batch, net.config["in_channels"], side, side], np.float32, name="x")

    b = GraphBuilder(ops)

    def conv(x: Any, weight: Any, bias: Any, pad: int) -> Any:
        return b.convolve(x, weights(weight), None if bias is None else weights(bias),
                          pads=(pad, pad))  # fmt: skip

    def block(x: Any, layers: nn.Sequential) -> Any:
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                x = conv(x, layer.weight, layer.bias, int(layer.padding[0]))
            elif isinstance(layer, nn.ReLU):
                x = ops.relu(x)
            elif isinstance(layer, _SkipJoin):
                up, skip = x
                pad = int(layer.padding[0])
                x = ops.add(
                    conv(up, layer.up_weight, layer.bias, pad),
                    conv(skip, layer.skip_weight, None, pad),
                )
            else:
                raise SegmenterError(f"unet: no OpenVINO operator for {type(layer).__name__}")
        return x

    x, skips = x_in, []
    for i, layers in enumerate(net.down):
        if i:
            x = ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)
        x = block(x, layers)
        skips.append(x)
    for up, layers, skip in zip(net.up, net.dec, reversed(skips[:-1]), strict=True):
        u = ops.convolution_backprop_data(
            x, b.const(weights(up.weight)), [2, 2], pads_begin=[0, 0], pads_end=[0, 0]
        )
        u = b.add_bias(u, weights(up.bias))
        x = block((u, skip), layers)
    y = conv(x, net.head.weight, net.head.bias, 0)
    return ov.Model([y], [x_in], "nucscale-unet")
