"""The arithmetic a network runs in on the CPU (float32, or bfloat16 where the CPU does it),
and what runs it there (OpenVINO where installed, else torch).

CPUs with AVX512-BF16 or AMX (AMD Zen 4 and later, Intel Cooper Lake / Sapphire Rapids and
later) multiply bfloat16 in hardware; oneDNN's bfloat16 convolutions then run the default U-Net
in 0.41-0.45 of the float32 time per patch on the 2-core AMD EPYC development machine
(``benchmarks/models.py --precision float32,bfloat16``). Its maps change by the rounding of
8-bit mantissas, which the held-out scores do not see (README, ``--cpu-precision``).
Elsewhere bfloat16 is emulated and no faster, so ``auto`` keeps float32 there.

The network itself runs as its bfloat16 copy (:mod:`._twin`). This module imports torch only
to ask the CPU (:func:`native_bf16`, in the plan's process, a worker): the command's own
process imports the pipeline but never runs a network, and does without torch.

A slide's precision is chosen once, by the plan (:func:`cpu_precision`), and every forward task
uses it: a tile's maps never depend on which worker computed them. On a GPU the engine runs
bfloat16 autocast whatever this says (:mod:`._engine`).

The runtime, likewise chosen once per slide (:func:`cpu_runtime`): OpenVINO's CPU plugin runs
the default U-Net's patch in 24-25 ms against torch's 31-33 ms in bfloat16 (0.73 against 0.92
s for 16 patches in float32), and two workers running it at once on the 2-core machine do not
slow each other (torch's: 5-15 %; README, the twenty-fourth session). Its maps differ from
torch's by float rounding only (:mod:`._openvino`).
"""

from __future__ import annotations

import importlib.util

from nucscale.config import CPU_PRECISIONS, CPU_RUNTIMES
from nucscale.errors import SegmenterError


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX512-BF16 or AMX tiles)."""
    import torch

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


def openvino_installed() -> bool:
    """Whether the openvino package can be imported here (looked up, not imported)."""
    return importlib.util.find_spec("openvino") is not None


def cpu_runtime(asked: str) -> str:
    """``openvino`` or ``torch`` for ``asked`` (one of :data:`CPU_RUNTIMES`): ``auto`` is
    OpenVINO where it is installed."""
    if asked not in CPU_RUNTIMES:
        raise SegmenterError(f"cpu runtime must be one of {', '.join(CPU_RUNTIMES)}, got {asked!r}")
    installed = openvino_installed()
    if asked == "openvino" and not installed:
        raise SegmenterError(
            "--cpu-runtime openvino: the openvino package is not installed (pip install openvino)"
        )
    if asked == "auto":
        return "openvino" if installed else "torch"
    return asked


def openvino_version() -> str:
    """The installed OpenVINO's version, for provenance (from its metadata: nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "not installed"


def checked(precision: str) -> str:
    """``precision`` when the engine can run it (``float32`` or ``bfloat16``), else ValueError."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    return precision


def checked_runtime(runtime: str) -> str:
    """``runtime`` when the engine can run it (``torch`` or ``openvino``), else ValueError."""
    if runtime not in ("torch", "openvino"):
        raise ValueError(f"runtime must be torch or openvino, got {runtime!r}")
    return runtime
