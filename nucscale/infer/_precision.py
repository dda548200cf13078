"""The arithmetic a network runs in on the CPU: float32, or bfloat16 where the CPU does it.

CPUs with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Cooper Lake / Sapphire Rapids and
later) multiply bfloat16 in hardware; oneDNN's bfloat16 convolutions then run the default U-Net
in 0.41-0.45 of the float32 time per patch on the 2-core AMD EPYC development machine
(``benchmarks/models.py --precision float32,bfloat16``). Its maps change by the rounding of
8-bit mantissas, which the held-out scores do not see (README, ``--cpu-precision``).
Elsewhere bfloat16 is emulated and no faster, so ``auto`` keeps float32 there.

The network's weights are copied to bfloat16 once per process (:func:`bf16_twin`, not
``torch.autocast``, which converts them again on every call: 38 against 27 ms a patch); its
input is rounded to bfloat16 and its output (the logits) brought back to float32, so what the
model does after the network (the U-Net's sigmoid) is computed in float32 as before.

A slide's precision is chosen once, by the plan (:func:`cpu_precision`), and every forward task
uses it: a tile's maps never depend on which worker computed them. On a GPU the engine runs
bfloat16 autocast whatever this says (:mod:`._engine`).
"""

from __future__ import annotations

import copy
import threading
import weakref

import torch
from torch import nn

from nucscale.config import CPU_PRECISIONS
from nucscale.errors import SegmenterError

_TWINS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in checks)
    except (AttributeError, RuntimeError):  # a torch without the checks: assume not
        return False


def cpu_precision(asked: str) -> str:
    """``float32`` or ``bfloat16`` for ``asked`` (one of :data:`CPU_PRECISIONS`) on this CPU."""
    if asked not in CPU_PRECISIONS:
        raise SegmenterError(
            f"cpu precision must be one of {', '.join(CPU_PRECISIONS)}, got {asked!r}"
        )
    if asked == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return asked


def checked(precision: str) -> str:
    """``precision`` when the engine can run it (``float32`` or ``bfloat16``), else ValueError."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    return precision


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
