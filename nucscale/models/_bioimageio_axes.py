"""The geometry of a bioimage.io model's tensors: axis order, valid sizes, halo, pixel size.

Helpers of :mod:`nucscale.models._bioimageio_package`, reading ``bioimageio.spec`` 0.5 axis
descriptions (``model.v0_5``) into plain values; anything nucscale cannot tile on its global
patch grid (3D, time or index axes, outputs on another grid, non-square or anisotropic
patches) is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nucscale.errors import SegmenterError

#: Micrometres per unit of the space units a package may declare.
_UM_PER_UNIT = {
    "angstrom": 1e-4,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}


@dataclass(frozen=True)
class Tiling:
    """Valid sizes of the input's space axes: ``min + step * n`` (``step`` 0: only ``min``)."""

    min: int
    step: int

    def valid(self, size: int) -> bool:
        if self.step == 0:
            return size == self.min
        return size >= self.min and (size - self.min) % self.step == 0


def _error(where: str, reason: str) -> SegmenterError:
    return SegmenterError(f"{where}: {reason}")


def axes_of(axes: Any, where: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Axis kinds in order and kind -> axis id; 2D images only."""
    kinds: list[str] = []
    ids: dict[str, str] = {}
    for ax in axes:
        if ax.type == "batch":
            kind = "b"
        elif ax.type == "channel":
            kind = "c"
        elif ax.type == "space" and str(ax.id) in ("y", "x"):
            kind = str(ax.id)
        else:
            raise _error(where, f"axis {ax.id!r} ({ax.type}): nucscale runs 2D models (y, x)")
        kinds.append(kind)
        ids[kind] = str(ax.id)
    if "y" not in ids or "x" not in ids:
        raise _error(where, "needs space axes y and x")
    return tuple(kinds), ids


def tiling_of(ysize: Any, xsize: Any, where: str) -> Tiling:
    from bioimageio.spec.model import v0_5

    found = []
    for size in (ysize, xsize):
        if isinstance(size, int):
            found.append(Tiling(size, 0))
        elif isinstance(size, v0_5.ParameterizedSize):
            found.append(Tiling(size.min, size.step))
        else:
            raise _error(where, f"input size {size!r}: nucscale needs fixed or min + n*step sizes")
    if found[0] != found[1]:
        raise _error(
            where,
            f"y and x take different sizes ({found[0]}, {found[1]}); nucscale runs square patches",
        )
    return found[0]


def output_geometry(
    axes: Any, ids: Mapping[str, str], input_id: Any, in_ids: Mapping[str, str], where: str
) -> tuple[int, int]:
    """``(halo, offset)`` of the output's space axes, equal for y and x, at the input's scale."""
    found = []
    for kind in ("y", "x"):
        ax = next(a for a in axes if str(a.id) == ids[kind])
        size, halo = ax.size, int(getattr(ax, "halo", 0) or 0)
        ref_ok = (
            getattr(size, "tensor_id", None) == input_id
            and str(getattr(size, "axis_id", "")) == in_ids[kind]
        )
        if not ref_ok:
            raise _error(
                where,
                f"outputs[0] axis {ax.id!r}: its size must refer to the input's axis "
                f"{in_ids[kind]!r} (nucscale runs dense, same-grid outputs)",
            )
        if int(size.offset) % 2 or int(size.offset) > 0:
            raise _error(
                where,
                f"outputs[0] axis {ax.id!r}: size offset {size.offset} must be even and "
                "<= 0 (a centred output)",
            )
        found.append((halo, int(size.offset)))
    if found[0] != found[1]:
        raise _error(where, "outputs[0]: y and x have different halos or offsets")
    return found[0]


def mpp_of(ys: Any, xs: Any, where: str) -> float | None:
    """µm per pixel when the space axes give a physical unit; ``None`` otherwise."""
    if ys.unit is None and xs.unit is None:
        return None
    if ys.unit not in _UM_PER_UNIT or xs.unit not in _UM_PER_UNIT:
        raise _error(where, f"space unit {ys.unit or xs.unit!r}: not a microscope length unit")
    y, x = ys.scale * _UM_PER_UNIT[ys.unit], xs.scale * _UM_PER_UNIT[xs.unit]
    if abs(y - x) > 1e-6 * max(y, x):
        raise _error(where, f"anisotropic pixels ({y:g} x {x:g} µm); nucscale needs square pixels")
    return float(x)
