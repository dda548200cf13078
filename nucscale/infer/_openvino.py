"""A network run by OpenVINO's CPU plugin, standing in for its torch module on CPU workers.

The model describes its network as an OpenVINO graph for one input shape
(:meth:`~nucscale.contracts.DenseModel.openvino_graph`: built from the weights in milliseconds;
``openvino.convert_model`` traced the torch module for 1.6 s, paid again by every worker
process). The graph is compiled once per process, network, precision, shape and thread count
(:func:`openvino_twin`), and :class:`_OnOpenVino` takes the engine's float32 batch and returns
the network's float32 logits, as the torch module does, so what the model does around the
network (the U-Net's sigmoid and crop) is unchanged.

Compiled with ``INFERENCE_PRECISION_HINT`` set either way (on CPUs with bfloat16 OpenVINO's
default is bfloat16, not float32), one inference thread per worker thread, and
``ENABLE_CPU_PINNING`` off: pinned, two workers' threads were put on the same core (40 patches
in 2.0 s each, two at once, against 1.0 s alone; unpinned 1.0 s both).

A compiled network runs one inference at a time (its own lock): a threaded worker's tasks take
turns, as they would share the same cores anyway.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from nucscale._offline import import_openvino
from nucscale.contracts import DenseModel
from nucscale.errors import SegmenterError, first_line

#: OpenVINO's name for each of the engine's precisions.
_HINTS = {"float32": "f32", "bfloat16": "bf16"}
#: per network (dropped with it): (precision, shape, threads) -> compiled
_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], _OnOpenVino]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


class _OnOpenVino(nn.Module):
    """A compiled OpenVINO network behind a torch module's call: float32 (N, C, H, W) in, float32
    logits out, for the one input shape it was compiled for. A graph with several results (one
    per HoVer-Net branch) returns them as the module does, a dict by their names."""

    def __init__(self, compiled: Any, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.request = compiled.create_infer_request()
        self.shape = shape
        self.lock = threading.Lock()
        outputs = list(compiled.outputs)
        self.names = [o.get_any_name() for o in outputs] if len(outputs) > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if tuple(x.shape) != self.shape:
            raise SegmenterError(
                f"the OpenVINO network was compiled for input {self.shape}, got {tuple(x.shape)}"
            )
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        with self.lock:
            out = self.request.infer({0: batch})
            # copies: the request reuses its output buffers
            if self.names is None:
                return torch.from_numpy(np.array(out[0], np.float32))
            arrays = [np.array(out[i], np.float32) for i in range(len(self.names))]
            return {n: torch.from_numpy(a) for n, a in zip(self.names, arrays, strict=True)}


def _reason(exc: BaseException) -> str:
    """OpenVINO's reason: its messages start with a line per source location it passed
    ("Exception from src/...:117:"), the reason after them."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith("Exception from ")]
    return reasons[0] if reasons else first_line(exc)


def openvino_twin(
    model: DenseModel, precision: str, shape: tuple[int, int, int, int], threads: int
) -> nn.Module:
    """The model's network compiled by OpenVINO for ``shape`` = (batch, channels, side, side),
    made once per process (from :meth:`~nucscale.contracts.DenseModel.openvino_graph`)."""
    try:
        ov = import_openvino()
    except ImportError as exc:  # the plan ran where it is installed, this worker lacks it
        raise SegmenterError(
            f"this worker cannot import openvino ({exc}), which the slide's plan chose to run "
            "the network: install it on every worker, or run with --cpu-runtime torch"
        ) from None

    key = (precision, tuple(shape), threads)
    with _LOCK:
        compiled_for = _COMPILED.setdefault(model.module, {})
        twin = compiled_for.get(key)
        if twin is None:
            graph = model.openvino_graph(shape[0], shape[2])
            if graph is None:
                raise SegmenterError(f"{model.name}: no OpenVINO graph; use --cpu-runtime torch")
            config = {
                "INFERENCE_PRECISION_HINT": _HINTS[precision],
                "INFERENCE_NUM_THREADS": max(1, threads),
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": False,
            }
            try:
                compiled = ov.Core().compile_model(graph, "CPU", config)
            except RuntimeError as exc:  # e.g. a precision this CPU's plugin does not take
                raise SegmenterError(
                    f"OpenVINO could not compile {model.name} in {precision} on this CPU "
                    f"({_reason(exc)}); run with --cpu-runtime torch"
                ) from None
            twin = compiled_for[key] = _OnOpenVino(compiled, tuple(shape))
    return twin
