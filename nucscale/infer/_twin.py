"""The bfloat16 copy of a network that the engine runs on CPUs that compute bfloat16.

The network's weights are copied to bfloat16 once per process (:func:`bf16_twin`, not
``torch.autocast``, which converts them again on every call: 38 against 27 ms a patch); its
input is rounded to bfloat16 and its output (the logits) brought back to float32, so what the
model does after the network (the U-Net's sigmoid) is computed in float32 as before. Which
precision a slide runs in is :mod:`._precision`'s.
"""

from __future__ import annotations

import copy
import threading
import weakref

import torch
from torch import nn

_TWINS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class _InBfloat16(nn.Module):
    """``net`` with bfloat16 weights: float32 in and out, bfloat16 between."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(torch.bfloat16)).float()


def bf16_twin(module: nn.Module) -> nn.Module:
    """A bfloat16 copy of ``module`` (in eval mode, in its memory format), made once per module
    and process and dropped with it."""
    with _LOCK:
        twin = _TWINS.get(module)
        if twin is None:
            twin = _InBfloat16(copy.deepcopy(module).to(torch.bfloat16)).eval()
            _TWINS[module] = twin
    return twin
