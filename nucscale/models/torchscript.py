"""A TorchScript U-Net (e.g. bioimage.io "UNet 2D Nuclei Broad") described by a JSON model card.

The card (``nucscale/models/cards/<name>.json``, or any JSON path) says what the network needs
and what it returns; YAML is not used so no extra dependency is needed:

``input.channels`` / ``input.rgb``
    How the RGB patch becomes the network's channels: ``{"mode": "grey"}`` (mean of R, G, B,
    repeated to every channel), ``{"mode": "channel", "index": i}`` (one RGB channel) or
    ``{"mode": "rgb"}`` (the three channels as they are; needs ``channels == 3``).
``input.invert``
    Replace v by 255 - v before normalising. Decision: the card states the modality the network
    was trained on (UNet 2D Nuclei Broad: fluorescence, ``false``); for the other modality the
    caller passes ``invert=True`` (brightfield H&E: dark nuclei become bright, as the network
    expects). It is never guessed per image, which would break translation consistency.
``input.normalisation``
    ``{"mode": "zero_mean_unit_variance", "eps": e}`` per patch and channel over y, x (as the
    bioimage.io pre-processing), ``{"mode": "scale_0_1"}`` (v / 255) or
    ``{"mode": "fixed", "mean": [...], "std": [...]}`` on the 0..255 scale. Per-patch statistics
    keep inference translation consistent because patches sit on the engine's global grid.
``patch``
    ``input_size`` and ``output_size``: a same-size U-Net whose border (bioimage.io "halo") is
    unreliable is modelled as input 512 -> output 448, so the engine uses only the valid centre.
``output``
    ``foreground_channel`` and ``activation`` (``"sigmoid"`` applied here, or ``"none"`` when the
    network already returns probabilities).
``postprocess``
    ``threshold``, ``h`` (h-maxima depth of the distance transform for seeds), ``min_size``
    (px), ``max_nucleus_diameter`` (px).
``mpp``
    Pixel size the network expects, µm/px.

Post-processing (:func:`watershed_instances`) uses only fixed parameters: probability > threshold,
Euclidean distance transform, h-maxima seeds, marker watershed, small objects removed. There is
no per-image statistic, so the result at a pixel depends only on the maps around it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from nucscale.errors import SegmenterError
from nucscale.infer._segmenter import Segmentation
from nucscale.models._base import DenseModel, PatchSpec

log = logging.getLogger(__name__)

CARDS_DIR = Path(__file__).with_name("cards")
CARD_VERSION = 1
_RGB_MODES = ("grey", "channel", "rgb")
#: rgb2hed haematoxylin value shown as full scale (255) in haematoxylin input mode; nuclei on
#: CMU-1 reach 0.1-0.3.
_H_FULL_SCALE = 0.3
_NORMS = ("zero_mean_unit_variance", "scale_0_1", "fixed")
_ACTIVATIONS = ("sigmoid", "none")


@dataclass(frozen=True)
class ModelCard:
    """What a TorchScript dense network expects and returns (parsed from a JSON card)."""

    path: str
    name: str
    mpp: float
    channels: int
    rgb_mode: str
    rgb_index: int
    invert: bool
    norm_mode: str
    patch: PatchSpec
    foreground_channel: int
    activation: str
    threshold: float
    h: float
    min_size: int
    max_nucleus_diameter: int
    eps: float = 1e-6
    norm_mean: tuple[float, ...] = ()
    norm_std: tuple[float, ...] = ()
    weights_sha256: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


def _get(d: Mapping[str, Any], dotted: str, path: str, kind: type | tuple[type, ...]) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise SegmenterError(f"{path}: model card has no field {dotted!r}; add it")
        cur = cur[part]
    if (isinstance(cur, bool) and kind is not bool) or not isinstance(cur, kind):
        raise SegmenterError(f"{path}: model card field {dotted!r} has a wrong type: {cur!r}")
    return cur


def _choice(value: str, allowed: tuple[str, ...], dotted: str, path: str) -> str:
    if value not in allowed:
        raise SegmenterError(f"{path}: model card field {dotted!r} must be one of {allowed}")
    return value


def card_path(card: str | Path) -> Path:
    """A bundled card's path from its name, or the given JSON path."""
    p = Path(card)
    if p.suffix == ".json" or p.exists():
        return p
    return CARDS_DIR / f"{card}.json"


def load_card(card: str | Path) -> ModelCard:
    """Read and validate a model card (bundled name or JSON path).

    Raises
    ------
    SegmenterError
        The card does not exist, is not JSON, has an unknown ``card_version``, or lacks a field
        or has one of the wrong type (the message names the file and the field).
    """
    p = card_path(card)
    path = str(p)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(c.stem for c in CARDS_DIR.glob("*.json")))
        raise SegmenterError(f"{path}: model card not found; bundled cards: {known}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmenterError(f"{path}: not a readable JSON model card: {exc}") from None
    if not isinstance(raw, Mapping):
        raise SegmenterError(f"{path}: a model card must be a JSON object")
    version = _get(raw, "card_version", path, int)
    if version != CARD_VERSION:
        raise SegmenterError(f"{path}: unknown card_version {version}; this nucscale reads 1")
    num = (int, float)
    channels = _get(raw, "input.channels", path, int)
    rgb_mode = _choice(_get(raw, "input.rgb.mode", path, str), _RGB_MODES, "input.rgb.mode", path)
    rgb_index = _get(raw, "input.rgb.index", path, int) if rgb_mode == "channel" else 0
    if rgb_mode == "channel" and not 0 <= rgb_index < 3:
        raise SegmenterError(f"{path}: input.rgb.index must be 0, 1 or 2")
    if rgb_mode == "rgb" and channels != 3:
        raise SegmenterError(f"{path}: input.rgb.mode 'rgb' needs input.channels = 3")
    norm = _choice(
        _get(raw, "input.normalisation.mode", path, str), _NORMS, "input.normalisation.mode", path
    )
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if norm == "fixed":
        mean = tuple(float(v) for v in _get(raw, "input.normalisation.mean", path, list))
        std = tuple(float(v) for v in _get(raw, "input.normalisation.std", path, list))
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise SegmenterError(f"{path}: normalisation mean/std need {channels} values, std > 0")
    eps = 1e-6
    if norm == "zero_mean_unit_variance" and "eps" in raw["input"]["normalisation"]:
        eps = float(_get(raw, "input.normalisation.eps", path, num))
    spec = PatchSpec(
        _get(raw, "patch.input_size", path, int), _get(raw, "patch.output_size", path, int)
    )
    if (
        spec.output_size <= 0
        or spec.input_size < spec.output_size
        or spec.margin * 2 != (spec.input_size - spec.output_size)
    ):
        raise SegmenterError(f"{path}: patch sizes must satisfy input >= output, even difference")
    activation = _choice(
        _get(raw, "output.activation", path, str), _ACTIVATIONS, "output.activation", path
    )
    return ModelCard(
        path=path,
        name=_get(raw, "name", path, str),
        mpp=float(_get(raw, "mpp", path, num)),
        channels=channels,
        rgb_mode=rgb_mode,
        rgb_index=rgb_index,
        invert=_get(raw, "input.invert", path, bool),
        norm_mode=norm,
        patch=spec,
        foreground_channel=_get(raw, "output.foreground_channel", path, int),
        activation=activation,
        threshold=float(_get(raw, "postprocess.threshold", path, num)),
        h=float(_get(raw, "postprocess.h", path, num)),
        min_size=_get(raw, "postprocess.min_size", path, int),
        max_nucleus_diameter=_get(raw, "postprocess.max_nucleus_diameter", path, int),
        eps=eps,
        norm_mean=mean,
        norm_std=std,
        weights_sha256=str(raw.get("weights_sha256", "")),
        meta={k: raw[k] for k in ("title", "license", "authors", "source", "cite") if k in raw},
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, in eval mode; SegmenterError naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise SegmenterError(f"{p}: weights file not found")
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript, but bioimage.io ships weights in it and
            # torch.export cannot read them; the warning is not actionable for our users
            warnings.filterwarnings("ignore", "`torch.jit.load`", DeprecationWarning)
            module = torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SegmenterError(f"{p}: not a TorchScript file ({first})") from None
    return module.eval()


def watershed_instances(
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    h: float = 2.0,
    min_size: int = 20,
    max_diameter: int = 0,
) -> np.ndarray:
    """Instances from a foreground probability map, with fixed parameters.

    Foreground is ``prob > threshold``; seeds are the h-maxima of its Euclidean distance
    transform (a component too thin for an h-maximum gets one seed of its own); a marker
    watershed on the negated distance splits touching nuclei; instances smaller than
    ``min_size`` px, or (when ``max_diameter`` > 0) with a bounding box side longer than it,
    are removed. Returns (h, w) int32 labels 1..n in raster order of their seeds.
    """
    fg = prob > threshold
    if not fg.any():
        return np.zeros(prob.shape, np.int32)
    dist = ndi.distance_transform_edt(fg)
    seeds = (h_maxima(dist, h) > 0) & fg
    markers, n = ndi.label(seeds)
    comps, _ = ndi.label(fg)
    unseeded = np.setdiff1d(np.unique(comps[fg]), np.unique(comps[seeds]))
    if unseeded.size:  # thin components: their own seed
        extra = np.isin(comps, unseeded)
        extra_lab, _ = ndi.label(extra)
        markers[extra] = extra_lab[extra] + n
    labels = watershed(-dist, markers, mask=fg)
    ids, areas = np.unique(labels, return_counts=True)
    drop = ids[(areas < min_size) & (ids > 0)]
    if max_diameter > 0:
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is not None and max(s.stop - s.start for s in sl) > max_diameter:
                drop = np.append(drop, i)
    if drop.size:
        labels[np.isin(labels, drop)] = 0
    relabelled, _, _ = relabel_sequential(labels)
    return relabelled.astype(np.int32)


class TorchScriptModel(DenseModel):
    """A TorchScript dense network plus the pre/post-processing its model card describes.

    Parameters
    ----------
    weights:
        The TorchScript file (``torch.jit.save`` output).
    card:
        A bundled card name (``nucscale/models/cards/<name>.json``) or a JSON path.
    invert:
        Override the card's ``input.invert`` (``True`` for brightfield with a fluorescence model).
    haematoxylin:
        Feed the haematoxylin optical density (colour deconvolution, scaled so 0.5 OD -> 255)
        instead of RGB: on H&E it shows the nuclei bright on a dark background, as a
        fluorescence-trained network expects; grey inversion would make all tissue bright.
    """

    def __init__(
        self,
        weights: str | Path,
        card: str | Path = "unet2d-nuclei-broad",
        *,
        invert: bool | None = None,
        haematoxylin: bool = False,
    ) -> None:
        self.card = load_card(card)
        self.name = self.card.name
        self.mpp = self.card.mpp
        self.spec = self.card.patch
        self.invert = self.card.invert if invert is None else bool(invert)
        self.haematoxylin = haematoxylin
        self.max_nucleus_diameter = self.card.max_nucleus_diameter
        self.postprocess_context = self.card.max_nucleus_diameter
        self.type_names = {1: "nucleus"}
        path = Path(weights)
        self.module = load_torchscript(path)
        self.weights_path = str(path)
        self.weights_sha256 = _sha256(path)
        if self.card.weights_sha256 and self.card.weights_sha256 != self.weights_sha256:
            log.warning("%s: sha256 differs from the one in model card %s", path, self.card.path)

    def preprocess(
        self, patches: np.ndarray, calibration: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, C, H, W) float32 normalised network input."""
        if self.haematoxylin:
            h = rgb2hed(patches, channel_axis=-1)[..., :1] * (255.0 / _H_FULL_SCALE)
            h = np.clip(h, 0.0, 255.0).astype(np.float32)
            patches = np.repeat(h, 3, axis=-1)
        x = torch.from_numpy(np.ascontiguousarray(patches)).to(torch.float32)
        c = self.card
        if c.rgb_mode == "grey":
            x = x.mean(dim=-1, keepdim=True).expand(*x.shape[:-1], c.channels)
        elif c.rgb_mode == "channel":
            x = x[..., c.rgb_index : c.rgb_index + 1].expand(*x.shape[:-1], c.channels)
        x = x.permute(0, 3, 1, 2).contiguous()
        if self.invert:
            x = 255.0 - x
        if c.norm_mode == "zero_mean_unit_variance":
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True, correction=0)
            x = (x - mean) / (std + c.eps)
        elif c.norm_mode == "scale_0_1":
            x = x / 255.0
        else:
            mean_t = torch.tensor(c.norm_mean, dtype=torch.float32).view(1, -1, 1, 1)
            std_t = torch.tensor(c.norm_std, dtype=torch.float32).view(1, -1, 1, 1)
            x = (x - mean_t) / std_t
        return x

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an already-normalised tensor, whole output, activation applied."""
        y = self.module(x)
        return torch.sigmoid(y) if self.card.activation == "sigmoid" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> maps over the central ``output_size`` px (the halo cut off)."""
        y = self.run_network(x)
        m, out = self.spec.margin, self.spec.output_size
        return y[:, :, m : m + out, m : m + out]

    def postprocess(self, maps: np.ndarray) -> Segmentation:
        """Foreground probability > threshold -> distance-transform watershed instances."""
        c = self.card
        prob = maps[c.foreground_channel]
        labels = watershed_instances(
            prob,
            threshold=c.threshold,
            h=c.h,
            min_size=c.min_size,
            max_diameter=c.max_nucleus_diameter,
        )
        n = int(labels.max())
        probs = (
            np.asarray(ndi.mean(prob, labels, np.arange(1, n + 1)), np.float32)
            if n
            else np.zeros(0, np.float32)
        )
        return Segmentation(labels, np.ones(n, np.int16), probs)

    def predict_image(self, rgb: np.ndarray, *, batch_size: int = 1) -> np.ndarray:
        """(K, h, w) maps of a whole image on the global grid, padded by reflection.

        Reflection, not a constant: with per-patch normalisation a constant border (black or
        white) shifts the patch statistics, and the network then marks the whole background as
        nuclei (measured on DSB fluorescence: foreground Dice 0.03 with zero padding, 0.57 with
        reflection, on the same image).
        """
        from nucscale.infer._engine import predict_region  # the engine imports models._base

        h, w = rgb.shape[:2]
        m, out = self.spec.margin, self.spec.output_size
        ph, pw = -(-h // out) * out - h, -(-w // out) * out - w
        padded = np.pad(rgb, ((m, m + ph), (m, m + pw), (0, 0)), mode="symmetric")
        maps, (x0, y0, _, _) = predict_region(self, padded, (-m, -m), batch_size=batch_size)
        return maps[:, m - y0 : m - y0 + h, m - x0 : m - x0 + w]

    def segment_image(self, rgb: np.ndarray) -> Segmentation:
        """Instances of a whole image (:meth:`predict_image` then :meth:`postprocess`)."""
        return self.postprocess(self.predict_image(rgb))
