"""Running exported networks: TorchScript (torch) and ONNX (ONNX Runtime) behind ``nn.Module``.

The engine (:mod:`nucscale.infer._engine`) moves ``model.module`` to a device and calls the
model's ``forward`` with torch tensors. A TorchScript module is one already. An ONNX network
is wrapped in :class:`OnnxModule`, an ``nn.Module`` without parameters whose ``forward`` hands
the tensor to an ``onnxruntime.InferenceSession`` (CUDA provider when this process has one and
the tensor is on the GPU, else the CPU provider on as many threads as torch uses, so a worker's
``--threads`` holds for both runtimes). A fixed batch size in the ONNX graph (bioimage.io
exports often fix it to 1) is honoured by running the batch in slices of that size.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from nucscale.errors import SegmenterError, first_line

log = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def load_torchscript(data: bytes, where: str) -> torch.jit.ScriptModule:
    """A TorchScript module from the bytes of its file, on the CPU, in eval mode; SegmenterError
    naming ``where`` when they are not TorchScript."""
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript, but bioimage.io ships weights in it and
            # torch.export cannot read them; the warning is not actionable for our users
            warnings.filterwarnings("ignore", "`torch.jit.load`", DeprecationWarning)
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise SegmenterError(f"{where}: not a TorchScript file ({first_line(exc)})") from None
    return module.eval()


def onnx_providers() -> list[str]:
    """ONNX Runtime execution providers to use: CUDA first when present, always the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*cuda, "CPUExecutionProvider"]


class OnnxModule(nn.Module):
    """An ONNX network (one input, first output used) as a parameter-free ``nn.Module``.

    Parameters
    ----------
    data:
        The ``.onnx`` file's bytes.
    where:
        Named in errors (the file or package).
    threads:
        CPU threads of the session; default: torch's thread count in this process.
    """

    def __init__(self, data: bytes, where: str, *, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: its warnings go to stderr, not to logging
        try:
            self.session = ort.InferenceSession(data, opts, providers=onnx_providers())
        except Exception as exc:  # onnxruntime raises its own untyped errors on a bad graph
            raise SegmenterError(
                f"{where}: not an ONNX model ONNX Runtime can run ({first_line(exc)})"
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise SegmenterError(f"{where}: the ONNX graph has {len(inputs)} inputs; expected 1")
        self.input_name = inputs[0].name
        self.input_dtype = _ORT_DTYPES.get(inputs[0].type, np.float32)
        first_dim = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch: int | None = first_dim if isinstance(first_dim, int) else None
        self.providers = list(self.session.get_providers())

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """The network on an array; slices of the graph's fixed batch size when it has one."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        step = self.fixed_batch
        if step is None or x.shape[0] == step:
            return np.asarray(self.session.run(None, {self.input_name: x})[0])
        parts = [
            np.asarray(self.session.run(None, {self.input_name: x[i : i + step]})[0])
            for i in range(0, x.shape[0], step)
        ]
        return np.concatenate(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on any device -> the first output, float32, on ``x``'s device."""
        arr = (x.detach().float() if x.is_floating_point() else x.detach()).cpu().numpy()
        y = self.run_numpy(arr)
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(x.device)

    def extra_repr(self) -> str:
        return f"providers={self.providers}, fixed_batch={self.fixed_batch}"


def describe_runtime(module: Any) -> str:
    """``torch`` or ``onnxruntime (<providers>)``, for provenance."""
    if isinstance(module, OnnxModule):
        return f"onnxruntime ({', '.join(module.providers)})"
    return f"torch {torch.__version__}"
