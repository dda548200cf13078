"""What the networks' OpenVINO graphs share (:mod:`._unet_openvino`, :mod:`._hovernet_openvino`):
weights as arrays, float32 constants, static shapes, a convolution with its bias.

Hand-written because each graph is built node by node from the module's weights with
OpenVINO's operator set (``openvino.convert_model`` traces the torch module instead: 1.6 s for
the U-Net, 17 s for HoVer-Net, in every worker process).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def weights(t: Any) -> np.ndarray:
    """A torch tensor's values as float64 (folding arithmetic is done in it; constants are
    float32 again, :meth:`GraphBuilder.const`)."""
    return np.ascontiguousarray(t.detach().double().cpu().numpy())


class GraphBuilder:
    """Operators over OpenVINO's ``opset13`` module ``ops``, on static shapes."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops

    @staticmethod
    def shape(x: Any) -> list[int]:
        return [int(d) for d in x.output(0).get_shape()]

    def const(self, a: np.ndarray) -> Any:
        return self.ops.constant(np.ascontiguousarray(a, np.float32))

    def add_bias(self, y: Any, bias: np.ndarray | None) -> Any:
        """``y`` plus a per-channel ``bias`` (none: ``y``)."""
        if bias is None:
            return y
        return self.ops.add(y, self.const(bias.reshape(1, -1, 1, 1)))

    def convolve(
        self,
        x: Any,
        weight: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride: int = 1,
        pads: tuple[int, int] = (0, 0),
        groups: int = 1,
    ) -> Any:
        """A 2-D convolution of ``x`` by ``weight`` (out, in / groups, k, k), zero padding
        ``pads`` (before, after) on both axes, then ``bias``."""
        strides, before, after = [stride] * 2, [pads[0]] * 2, [pads[1]] * 2
        if groups == 1:
            y = self.ops.convolution(x, self.const(weight), strides, before, after, [1, 1])
        else:
            grouped = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
            y = self.ops.group_convolution(x, self.const(grouped), strides, before, after, [1, 1])
        return self.add_bias(y, bias)
