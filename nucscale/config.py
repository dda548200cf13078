"""One settings object; ``NUCSCALE_*`` environment variables override its defaults.

>>> Settings.from_env({"NUCSCALE_TILE": "512"}).tile
512
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nucscale.errors import ConfigError

#: What ``cpu_precision`` takes (:mod:`nucscale.infer._precision`).
CPU_PRECISIONS = ("auto", "float32", "bfloat16")
#: What ``cpu_runtime`` takes (:mod:`nucscale.infer._precision`).
CPU_RUNTIMES = ("auto", "openvino", "torch")


@dataclass(frozen=True)
class Settings:
    """Run settings shared by the CLI, the pipeline and the tests.

    Attributes
    ----------
    mpp:
        Analysis pixel size in µm/px; the slide is resampled to it. ``None``: the segmenter's
        native pixel size (a trained network's), else 0.5.
    mpp_tolerance:
        Relative difference between a level's pixel size and ``mpp`` below which the level is
        used as it is (no resampling); the recorded analysis pixel size is then the level's own.
    tile:
        Core size of a tile in analysis pixels (and of the label image's chunks); ``None``: the
        segmenter's own (:attr:`~nucscale.infer.Segmenter.default_tile`).
    halo:
        Context around each core in analysis pixels; ``None`` takes the segmenter's minimum.
    segmenter:
        Name of the segmenter (see :func:`nucscale.infer.get_segmenter`).
    weights:
        Weights file of a network segmenter (``None``: its default, if it ships one); for
        ``bioimageio``, the model package (folder, YAML or .zip).
    weights_format:
        Weights format to run from a bioimage.io package: ``torchscript`` or ``onnx``
        (``None``: the package's fastest here, see :mod:`nucscale.models.bioimageio`).
    tissue:
        ``auto`` (detect brightfield or fluorescence from the slide), ``brightfield``,
        ``fluorescence``, or ``none`` (keep every tile).
    tissue_max_size:
        Longest side, in pixels, of the low-resolution image used for tissue detection.
    max_pixels:
        Refuse a slide level whose pixel count exceeds this when it must be decoded whole
        (plain images), instead of exhausting memory.
    save_image:
        Also write the analysed image as OME-Zarr (``OUT/images/<id>.zarr``) beside the labels.
    features:
        ``morphology`` (the nucleus table) or ``full``: also CellProfiler-style intensity,
        texture, shape and neighbourhood measurements in ``OUT/features``
        (:mod:`nucscale.features._cellprofiler`).
    cpu_precision:
        The U-Net's arithmetic on CPU workers: ``float32``, ``bfloat16``, or ``auto``
        (bfloat16 where the CPU computes it natively; chosen once per slide by its plan). On a
        GPU the network always runs in bfloat16 autocast.
    cpu_runtime:
        What runs the U-Net's network on CPU workers: ``openvino`` (OpenVINO's CPU plugin),
        ``torch``, or ``auto`` (OpenVINO where it is installed; chosen once per slide by its
        plan). On a GPU torch runs it.
    """

    mpp: float | None = None
    mpp_tolerance: float = 0.05
    tile: int | None = None
    halo: int | None = None
    segmenter: str = "unet"
    weights: str | None = None
    weights_format: str | None = None
    tissue: str = "auto"
    tissue_max_size: int = 2048
    max_pixels: int = 2_000_000_000
    save_image: bool = False
    features: str = "morphology"
    cpu_precision: str = "auto"
    cpu_runtime: str = "auto"

    def __post_init__(self) -> None:
        if self.features not in ("morphology", "full"):
            raise ConfigError(f"features must be morphology or full, got {self.features!r}")
        if self.mpp is not None and not (math.isfinite(self.mpp) and self.mpp > 0):
            raise ConfigError(f"mpp must be a positive number of µm per pixel, got {self.mpp}")
        if self.tile is not None and self.tile < 64:
            raise ConfigError(f"tile must be at least 64 px, got {self.tile}")
        if self.tissue not in ("auto", "brightfield", "fluorescence", "none"):
            raise ConfigError(
                f"tissue must be auto, brightfield, fluorescence or none, got {self.tissue!r}"
            )
        if self.weights_format not in (None, "torchscript", "onnx"):
            raise ConfigError(
                f"weights format must be torchscript or onnx, got {self.weights_format!r}"
            )
        if self.cpu_precision not in CPU_PRECISIONS:
            raise ConfigError(
                f"cpu precision must be one of {', '.join(CPU_PRECISIONS)}, "
                f"got {self.cpu_precision!r}"
            )
        if self.cpu_runtime not in CPU_RUNTIMES:
            raise ConfigError(
                f"cpu runtime must be one of {', '.join(CPU_RUNTIMES)}, got {self.cpu_runtime!r}"
            )
        if self.halo is not None and self.halo < 0:
            raise ConfigError(f"halo must be >= 0, got {self.halo}")

    def replace(self, **changes: Any) -> Settings:
        """Copy with the fields given as non-``None`` values changed (``None``: keep as is)."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **kept)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``NUCSCALE_<FIELD>`` variables (e.g. ``NUCSCALE_TILE=512``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"NUCSCALE_{f.name.upper()}")
            if raw is None:
                continue
            kind = str(f.type)
            try:
                if "bool" in kind:
                    values[f.name] = _bool(raw)
                elif "int" in kind:
                    values[f.name] = int(raw)
                elif "float" in kind:
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise ConfigError(f"NUCSCALE_{f.name.upper()}={raw!r} is not a {kind}") from None
        return cls(**values)


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)
