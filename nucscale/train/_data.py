"""Training data: image + instance-label pairs from a folder, a deterministic hold-out split.

Folder layout (that of ``dsb2018-dev``)::

    DATA/
      <id>_image.png    RGB (or grey / RGBA, converted to RGB) uint8
      <id>_labels.png   instance labels, same size, 0 = background, 1..n nuclei (uint8/16)
      index.json        optional: [{"file_prefix": "<id>", "modality": "fluorescence",
                                    "mpp": 0.25}, ...]
      split.json        optional: {"train": [ids], "heldout": [ids]} overrides the hash split

Without ``index.json`` every image has modality ``"unknown"``. An image without a recorded
``mpp`` gets one from its ground truth by the rule of :mod:`nucscale.train._scale`
(:func:`pixel_sizes`), and :func:`load_samples` resamples every image to the analysis pixel
size. The hold-out is chosen per modality: ids sorted by SHA-256 of the id, the first
``round(fraction * n)`` held out (at least ``min_heldout`` where the modality has more images
than that), so the split depends only on the ids, never on file order or a random state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from nucscale.errors import InputError
from nucscale.train._scale import estimate_mpp, resample_pair


@dataclass(frozen=True)
class Sample:
    """One training image with its instance labels, at the analysis pixel size."""

    id: str
    modality: str
    image: np.ndarray  # (h, w, 3) uint8
    labels: np.ndarray  # (h, w) int32
    mpp: float = float("nan")  # the image's own pixel size, µm/px
    mpp_source: str = "unknown"  # "index" (recorded) or "estimated" (the rule)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise InputError(path, f"cannot read image ({exc})") from None


def _read_labels(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as exc:
        raise InputError(path, f"cannot read label image ({exc})") from None
    if arr.ndim != 2:
        raise InputError(path, f"instance labels must be one channel, got shape {arr.shape}")
    return arr.astype(np.int32)


def _index(root: Path) -> list[dict[str, object]]:
    index = root / "index.json"
    if not index.is_file():
        return []
    try:
        entries = json.loads(index.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(index, f"invalid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise InputError(index, "expected a list of {file_prefix, modality, mpp} objects")
    return [e for e in entries if isinstance(e, dict)]


def list_ids(folder: str | PathLike[str]) -> dict[str, str]:
    """Id -> modality of every ``<id>_image.png`` with its ``<id>_labels.png`` in ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "training data folder not found")
    ids = sorted(
        p.name[: -len("_image.png")]
        for p in root.glob("*_image.png")
        if (root / p.name.replace("_image.png", "_labels.png")).is_file()
    )
    if not ids:
        raise InputError(root, "no <id>_image.png + <id>_labels.png pairs found")
    modality = dict.fromkeys(ids, "unknown")
    for e in _index(root):
        key = e.get("file_prefix", e.get("id"))
        if key in modality:
            modality[str(key)] = str(e.get("modality", "unknown"))
    return modality


def pixel_sizes(folder: str | PathLike[str], ids: list[str]) -> dict[str, tuple[float, str]]:
    """Id -> (µm/px, source) of ``ids``: ``index.json``'s ``mpp`` ("index") where recorded,
    else the rule of :func:`nucscale.train._scale.estimate_mpp` on its labels ("estimated")."""
    root = Path(folder)
    recorded: dict[str, float] = {}
    for e in _index(root):
        key, mpp = e.get("file_prefix", e.get("id")), e.get("mpp")
        if isinstance(mpp, int | float) and not isinstance(mpp, bool):
            if not mpp > 0:
                raise InputError(root / "index.json", f"{key}: mpp must be > 0, got {mpp}")
            recorded[str(key)] = float(mpp)
    out: dict[str, tuple[float, str]] = {}
    for i in ids:
        if i in recorded:
            out[i] = (recorded[i], "index")
            continue
        mpp = estimate_mpp(_read_labels(root / f"{i}_labels.png"))
        if not mpp > 0:
            raise InputError(root / f"{i}_labels.png", "no nuclei to estimate a pixel size from")
        out[i] = (mpp, "estimated")
    return out


def _hash(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def split_ids(
    modality: dict[str, str], fraction: float = 0.2, min_heldout: int = 2
) -> tuple[list[str], list[str]]:
    """(train, held-out) ids: per modality, the ``fraction`` with the lowest id hash."""
    train: list[str] = []
    held: list[str] = []
    for mod in sorted(set(modality.values())):
        ids = sorted((i for i, m in modality.items() if m == mod), key=_hash)
        k = round(fraction * len(ids))
        if len(ids) > min_heldout:
            k = max(k, min_heldout)
        held += ids[:k]
        train += ids[k:]
    return sorted(train), sorted(held)


def load_split(folder: str | PathLike[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(train ids, held-out ids, id -> modality) of a data folder (``split.json`` or hash)."""
    root = Path(folder)
    modality = list_ids(root)
    split_file = root / "split.json"
    if split_file.is_file():
        try:
            split = json.loads(split_file.read_text())
            train, held = sorted(split["train"]), sorted(split["heldout"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                split_file, f"expected {{'train': [...], 'heldout': [...]}} ({exc})"
            ) from None
        missing = sorted(set(train + held) - set(modality))
        if missing:
            raise InputError(split_file, f"ids without image/label pair: {missing[:5]}")
        return train, held, modality
    train, held = split_ids(modality)
    return train, held, modality


def load_samples(
    folder: str | PathLike[str],
    ids: list[str],
    modality: dict[str, str],
    mpp: float | None = None,
) -> list[Sample]:
    """Read the pairs of ``ids`` from ``folder``; with ``mpp``, each resampled from its own
    pixel size (:func:`pixel_sizes`) to ``mpp`` µm/px, as ``nucscale run --mpp`` would."""
    root = Path(folder)
    sizes = pixel_sizes(root, ids) if mpp is not None else {}
    out = []
    for i in ids:
        img = _read_rgb(root / f"{i}_image.png")
        lab = _read_labels(root / f"{i}_labels.png")
        if img.shape[:2] != lab.shape:
            raise InputError(
                root / f"{i}_labels.png", f"size {lab.shape} differs from image {img.shape[:2]}"
            )
        own, source = sizes.get(i, (float("nan"), "unknown"))
        if mpp is not None:
            img, lab = resample_pair(img, lab, mpp / own)
        out.append(Sample(i, modality.get(i, "unknown"), img, lab, own, source))
    return out


def centre_distance(labels: np.ndarray) -> np.ndarray:
    """(h, w) float32: each nucleus pixel's distance to the nearest pixel outside its nucleus
    (background or another nucleus), divided by the largest such distance in that nucleus
    (1 at its centre, small at its edge; 0 in the background)."""
    out = np.zeros(labels.shape, np.float32)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = sl
        box = (slice(max(ys.start - 1, 0), ys.stop + 1), slice(max(xs.start - 1, 0), xs.stop + 1))
        mine = labels[box] == lab  # the box has a 1 px margin except at the image's edge,
        if mine.all():  # which is not an edge of the nucleus (it goes on beyond the patch)
            continue
        d = ndi.distance_transform_edt(mine).astype(np.float32)
        out[box][mine] = d[mine] / float(d.max())
    return out


def targets(labels: np.ndarray, channels: int = 2) -> np.ndarray:
    """(channels, h, w) float32 ``[foreground, boundary(, centre distance)]`` from labels.

    The boundary is ``find_boundaries(mode="inner")``: the outermost pixel ring of every
    instance, so touching nuclei are separated by two boundary pixels. The third channel, when
    asked for, is :func:`centre_distance`.
    """
    fg = labels > 0
    bd = find_boundaries(labels, connectivity=1, mode="inner") & fg
    maps = [fg.astype(np.float32), bd.astype(np.float32)]
    if channels > 2:
        maps.append(centre_distance(labels))
    return np.stack(maps)
