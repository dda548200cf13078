"""Loading network weights safely: ``torch.load(weights_only=True)`` only, strict key matching.

A checkpoint is either the official HoVer-Net format (a dict whose ``"desc"`` entry is the state
dict, saved by its training loop or ``convert_chkpt_tf2pytorch.py``) or a bare state dict. Keys
saved from ``nn.DataParallel`` start with ``"module."``, which is stripped. Pickled code is never
executed: a file that needs it is refused with a :class:`~nucscale.errors.SegmenterError`.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nucscale.errors import SegmenterError, first_line

_MAX_LISTED = 10


def sha256_file(path: str | PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _looks_like_torch(path: Path) -> bool:
    """A zip archive (torch >= 1.6) or a pickle stream (legacy ``torch.save``)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def safe_load(path: str | PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure a one-line error.

    Raises
    ------
    SegmenterError
        Missing file, not a torch file, or pickled objects other than tensors and plain
        containers (code is never unpickled).
    """
    p = Path(path)
    if p.is_dir():
        raise SegmenterError(f"{p}: a folder, not a weights file; check the --weights path")
    if not p.is_file():
        raise SegmenterError(f"{p}: weights file not found; check the --weights path")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch(p):
            raise SegmenterError(
                f"{p}: not a torch checkpoint (neither a zip archive nor a pickle stream, as "
                "torch.save writes)"
            ) from exc
        raise SegmenterError(
            f"{p}: refuses to load pickled code or non-tensor objects (weights_only=True): "
            f"{first_line(exc)}; re-save the checkpoint as a plain state dict"
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise SegmenterError(f"{p}: not a readable torch checkpoint ({first_line(exc)})") from exc


def load_checkpoint(path: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a torch checkpoint file, never unpickling code.

    Parameters
    ----------
    path:
        A file written by ``torch.save``: ``{"desc": state_dict, ...}`` or a state dict.

    Returns
    -------
    dict
        Parameter / buffer name -> tensor (CPU), with a leading ``"module."`` removed.

    Raises
    ------
    SegmenterError
        Missing file, not a torch file, pickled objects other than tensors, or no state dict.
    """
    p = Path(path)
    obj = safe_load(p)
    state = obj.get("desc", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise SegmenterError(f"{p}: no state dict in checkpoint (expected a 'desc' entry)")
    if "desc" not in state and {"state_dict", "config"} <= set(state):
        raise SegmenterError(
            f"{p}: nucscale U-Net weights, not a HoVer-Net checkpoint; use --model unet"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SegmenterError(f"{p}: state dict entry {key!r} is not a named tensor")
        out[key.removeprefix("module.")] = value
    return out


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: str | PathLike[str],
    hint: str = "check the model mode and nr_types",
) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a readable one-line error
    ending in ``hint`` (torch's own lists every key, a line each).

    BatchNorm ``num_batches_tracked`` buffers may be absent (checkpoints converted from
    TensorFlow, such as the released HoVer-Net weights, lack them); torch fills them in.

    Raises
    ------
    SegmenterError
        Names up to 10 missing and 10 unexpected keys, or up to 10 tensors whose shapes differ.
    """
    expected = set(module.state_dict())
    given = set(state_dict)
    missing = sorted(k for k in expected - given if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(given - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        listed = "; ".join(parts)
        raise SegmenterError(f"{path}: weights do not match the network ({listed}); {hint}")
    own = module.state_dict()
    shapes = [
        f"{k} {tuple(v.shape)} for {tuple(own[k].shape)}"
        for k, v in sorted(state_dict.items())
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        raise SegmenterError(
            f"{path}: weights do not match the network ({len(shapes)} tensors of another "
            f"shape: {_listing(shapes)}); {hint}"
        )
    try:
        # a plain dict carries no version metadata, so BatchNorm fills num_batches_tracked
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        raise SegmenterError(
            f"{path}: weights do not match the network: {' '.join(str(exc).split())}; {hint}"
        ) from exc
