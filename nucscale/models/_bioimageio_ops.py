"""bioimage.io pre- and post-processing ops, with every statistic taken once per slide.

A package declares ops such as ``zero_mean_unit_variance`` over the axes ``(x, y)``: in
bioimage.io's own tools that means a mean and a standard deviation of each *sample* (the image
handed to the network). nucscale hands the network patches of a slide, and a statistic of a
patch would make a pixel's output depend on which patch, hence which tile, it fell in (DESIGN
invariant 1). So every statistic an op needs (mean and std; percentiles of ``scale_range`` and
of ``clip``) is computed once per slide by :func:`calibrate_ops` on the network input made from
the plan's low-resolution image, and the same numbers are used for every patch by
:func:`apply_ops`. The slide is the sample; it is also the "dataset" of a per-dataset
statistic (format 0.4 ``mode: per_dataset``, 0.5 ``axes`` including ``batch``): nucscale has
no other data to take one from.

Deviation, by necessity: the statistics come from the plan's low-resolution image (longest
side 2048 px), not from the pixels at the model's resolution. A mean is the same at both; a
standard deviation or an extreme percentile is somewhat smaller at low resolution (fine texture
is averaged away), so patches come out with slightly more contrast than a whole-image run at
full resolution would give them. It is the same for every tile, which is what invariant 1 needs.

Ops are applied to a float32 tensor in the canonical layout (N, C, H, W); ids of the package's
axes are mapped to those dimensions. ``ensure_dtype`` casts (and so truncates) in place and the
last one also sets the dtype of the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nucscale.errors import SegmenterError

#: Ops whose numbers come from the slide (computed by :func:`calibrate_ops`).
STATS_OPS = ("zero_mean_unit_variance", "scale_range")
#: Ops nucscale runs on the input (pre-processing) and on the output (post-processing).
PRE_OPS = (
    "ensure_dtype",
    "zero_mean_unit_variance",
    "fixed_zero_mean_unit_variance",
    "scale_linear",
    "scale_range",
    "clip",
    "binarize",
    "sigmoid",
    "softmax",
)
POST_OPS = tuple(o for o in PRE_OPS if o not in STATS_OPS)
_DIMS = {"b": 0, "c": 1, "y": 2, "x": 3}
_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "uint16": torch.uint16,
    "int16": torch.int16,
    "uint32": torch.uint32,
    "int32": torch.int32,
    "uint64": torch.uint64,
    "int64": torch.int64,
    "bool": torch.bool,
}


@dataclass(frozen=True)
class Op:
    """One processing step: its bioimage.io id and keyword arguments (plain values)."""

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_descr(cls, descr: Any) -> Op:
        """From a ``bioimageio.spec`` processing description."""
        kwargs = getattr(descr, "kwargs", None)
        plain = kwargs.model_dump(mode="json") if kwargs is not None else {}
        return cls(str(descr.id), plain)


def _space_stats(op: Op) -> bool:
    """Whether the op takes a statistic (percentiles in ``clip``, any in the stats ops)."""
    k = op.kwargs
    if op.id in STATS_OPS:
        return True
    return op.id == "clip" and (
        k.get("min_percentile") is not None or k.get("max_percentile") is not None
    )


def check_ops(
    ops: Sequence[Op],
    where: str,
    ids: Mapping[str, str],
    *,
    own_tensor: str | None = None,
    output: bool = False,
) -> None:
    """Refuse, naming ``where[i]`` and the op, what nucscale cannot run translation-consistently.

    ``ids`` maps axis kinds (``b``, ``c``, ``y``, ``x``) to the tensor's axis ids.
    """
    allowed = POST_OPS if output else PRE_OPS
    known = set(ids.values())
    for i, op in enumerate(ops):
        at = f"{where}[{i}]"
        if op.id not in allowed:
            if op.id in PRE_OPS or (output and _space_stats(op)):
                raise SegmenterError(
                    f"{at}: op {op.id!r} needs statistics of the network's output; nucscale "
                    "computes statistics once per slide, from the input"
                )
            raise SegmenterError(
                f"{at}: op {op.id!r} is not supported by nucscale (it runs: {', '.join(allowed)})"
            )
        if output and _space_stats(op):
            raise SegmenterError(f"{at}: op {op.id!r} with percentiles needs output statistics")
        axis = op.kwargs.get("axis")
        if axis is not None and axis != ids.get("c"):
            raise SegmenterError(
                f"{at}: op {op.id!r} along axis {axis!r}: nucscale supports values per channel "
                f"only ({ids.get('c')!r})"
            )
        if _space_stats(op):
            axes = op.kwargs.get("axes")
            if axes is not None and not {ids["y"], ids["x"]} <= set(axes):
                raise SegmenterError(
                    f"{at}: op {op.id!r} over axes {list(axes)}: a statistic that does not span "
                    "both y and x would depend on the patch; nucscale takes it over the slide"
                )
            unknown = set(axes or ()) - known
            if unknown:
                raise SegmenterError(f"{at}: op {op.id!r}: unknown axes {sorted(unknown)}")
            ref = op.kwargs.get("reference_tensor")
            if ref is not None and ref != own_tensor:
                raise SegmenterError(
                    f"{at}: op {op.id!r} refers to tensor {ref!r}; nucscale supports the "
                    "tensor's own statistics only"
                )


def _per_channel(op: Op, ids: Mapping[str, str]) -> bool:
    """A statistic per channel (the channel axis is not among the reduced axes)."""
    axes = op.kwargs.get("axes")
    return axes is not None and "c" in ids and ids["c"] not in axes


def _stats(op: Op, x: torch.Tensor, select: np.ndarray | None, ids: Mapping[str, str]) -> dict:
    """The slide-level numbers of a statistics op, from the slide's network input ``x``
    (1, C, H, W) over the pixels ``select`` (all when ``None``)."""
    pix = x[0].double().numpy().reshape(x.shape[1], -1)
    if select is not None:
        pix = pix[:, select.reshape(-1)]
    if pix.shape[1] == 0:
        raise SegmenterError(f"op {op.id!r}: no pixels to compute the slide's statistics from")
    if not _per_channel(op, ids):
        pix = pix.reshape(1, -1)
    k = op.kwargs
    if op.id == "zero_mean_unit_variance":
        return {"mean": pix.mean(axis=1).tolist(), "std": pix.std(axis=1).tolist()}
    if op.id == "scale_range":
        low, high = np.percentile(pix, [k["min_percentile"], k["max_percentile"]], axis=1)
        return {"lower": low.tolist(), "upper": high.tolist()}
    out = {}  # clip with percentiles
    if k.get("min_percentile") is not None:
        out["min"] = np.percentile(pix, k["min_percentile"], axis=1).tolist()
    if k.get("max_percentile") is not None:
        out["max"] = np.percentile(pix, k["max_percentile"], axis=1).tolist()
    return out


def _key(i: int, op: Op, stat: str) -> str:
    return f"{op.id}[{i}].{stat}"


def calibrate_ops(
    ops: Sequence[Op], x: torch.Tensor, select: np.ndarray | None, ids: Mapping[str, str]
) -> dict[str, list[float]]:
    """Every statistic the ops need, from the slide's whole network input ``x`` (1, C, H, W)
    over the pixels ``select``; each op sees the output of the ops before it."""
    values: dict[str, list[float]] = {}
    for i, op in enumerate(ops):
        if _space_stats(op):
            values.update({_key(i, op, k): v for k, v in _stats(op, x, select, ids).items()})
        x = _apply(i, op, x, ids, values)
    return values


def apply_ops(
    ops: Sequence[Op],
    x: torch.Tensor,
    ids: Mapping[str, str],
    calibration: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The ops on ``x`` (N, C, H, W) with the slide's ``calibration``; float32 unless an
    ``ensure_dtype`` says otherwise."""
    dtype = torch.float32
    x = x.float()
    for i, op in enumerate(ops):
        x = _apply(i, op, x, ids, calibration or {})
        if op.id == "ensure_dtype":
            dtype = _DTYPES[op.kwargs["dtype"]]
    return x if dtype == torch.float32 else x.to(dtype)


def _values(v: Any, x: torch.Tensor) -> torch.Tensor | float:
    """A scalar, or one value per channel shaped to broadcast over (N, C, H, W)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return float(v[0])
        return torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
    return float(v)


def _stat(values: Mapping[str, Any], i: int, op: Op, stat: str) -> Any:
    key = _key(i, op, stat)
    if key not in values:
        raise SegmenterError(
            f"op {op.id!r} needs the slide's statistics ({key}); compute them once per slide "
            "with calibrate()"
        )
    return values[key]


def _apply(
    i: int, op: Op, x: torch.Tensor, ids: Mapping[str, str], values: Mapping[str, Any]
) -> torch.Tensor:
    k = op.kwargs
    if op.id == "ensure_dtype":
        return x.to(_DTYPES[k["dtype"]]).float()
    if op.id == "sigmoid":
        return torch.sigmoid(x)
    if op.id == "softmax":
        kinds = {v: kk for kk, v in ids.items()}
        return torch.softmax(x, dim=_DIMS[kinds[k.get("axis", ids.get("c"))]])
    if op.id == "binarize":
        return (x > _values(k["threshold"], x)).float()
    if op.id == "scale_linear":
        return x * _values(k.get("gain", 1.0), x) + _values(k.get("offset", 0.0), x)
    if op.id == "fixed_zero_mean_unit_variance":
        return (x - _values(k["mean"], x)) / _values(k["std"], x)
    if op.id == "zero_mean_unit_variance":
        mean = _values(_stat(values, i, op, "mean"), x)
        std = _values(_stat(values, i, op, "std"), x)
        return (x - mean) / (std + float(k.get("eps", 1e-6)))
    if op.id == "scale_range":
        low = _values(_stat(values, i, op, "lower"), x)
        high = _values(_stat(values, i, op, "upper"), x)
        return (x - low) / (high - low + float(k.get("eps", 1e-6)))
    if op.id == "clip":
        bounds = (
            ("min", "min_percentile", torch.maximum),
            ("max", "max_percentile", torch.minimum),
        )
        for bound, pct, limit in bounds:
            v = _stat(values, i, op, bound) if k.get(pct) is not None else k.get(bound)
            if v is not None:
                x = limit(x, torch.as_tensor(_values(v, x), dtype=torch.float32))
        return x
    raise SegmenterError(f"op {op.id!r} is not supported by nucscale")  # check_ops refused it
