"""The batched sliding-window engine: dense maps of a window on a global patch grid.

Output patches sit at global positions that are multiples of the model's ``output_size``; each
reads its input from ``margin`` px around it. A window (tile core + halo) therefore gets maps
only over the *valid* region where whole patches fit, and every map pixel there is computed from
exactly the same input pixels whichever window asks (DESIGN invariant 1). The valid region
shrinks from the window by at most ``margin + output_size - 1`` px on each side; the segmenter's
``context`` accounts for it, so the halo rule keeps every owned nucleus inside it. Given the
image's ``extent``, patches whose output lies wholly outside the image are not computed: the
valid region then ends on the image's last patch boundary, the same one in every window (and in
:func:`predict_image`), so the slide's edge tiles cost no more than they must.

On CUDA the network runs under bf16 autocast with channels-last tensors; on the CPU in the
``precision`` asked for (float32, or bfloat16 where the CPU computes it: :mod:`._precision`),
by torch or, with ``runtime`` ``openvino``, by OpenVINO (:mod:`._openvino`).
Patches are batched, always in full batches of the same size (the last one padded), because
convolution kernels are chosen by batch size and their float rounding differs; while the device
works on one batch, the next is cut and preprocessed in a background thread. The batch size is
the model's ``cpu_batch_size`` on the CPU (its ``openvino_batch_size`` where OpenVINO runs it) and
:data:`GPU_BATCH` on a GPU unless a caller fixes it, so every window of a slide computed on one
kind of device uses the same one.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from nucscale.contracts import DenseModel
from nucscale.infer._openvino import openvino_twin
from nucscale.infer._patches import patch_grid
from nucscale.infer._precision import checked, checked_runtime
from nucscale.infer._twin import bf16_twin

_MOVED: dict[int, torch.device] = {}
_LOCK = threading.Lock()


def pick_device() -> torch.device:
    """CUDA when this worker process sees a GPU, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _ready(model: DenseModel, device: torch.device) -> None:
    """Move the model to ``device`` once per process (eval mode; channels-last on CUDA, and on
    the CPU for models that ask for it: oneDNN runs small-channel convolutions faster so)."""
    with _LOCK:
        if _MOVED.get(id(model)) == device:
            return
        model.module.eval()
        model.module.to(device)
        if device.type == "cuda" or model.channels_last_cpu:
            model.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        _MOVED[id(model)] = device


#: Patches per forward pass on a GPU.
GPU_BATCH = 8


def batch_for(
    model: DenseModel, device: torch.device, asked: int | None = None, runtime: str = "torch"
) -> int:
    """The batch size: ``asked`` when given, else :data:`GPU_BATCH` on a GPU, the model's
    OpenVINO batch where OpenVINO runs it, else its CPU batch."""
    if asked is not None:
        return asked
    if device.type == "cuda":
        return GPU_BATCH
    if runtime == "openvino" and model.openvino_batch_size > 0:
        return model.openvino_batch_size
    return model.cpu_batch_size


def predict_region(
    model: DenseModel,
    rgb: np.ndarray,
    origin: tuple[int, int] = (0, 0),
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    extent: tuple[int, int] | None = None,
    calibration: Mapping[str, Any] | None = None,
    precision: str = "float32",
    runtime: str = "torch",
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Maps of ``rgb`` (whose top-left is global pixel ``origin`` = (x, y)); with ``extent``
    (the image's width, height) only over patches that overlap the image. ``calibration`` is
    the slide's (:meth:`DenseModel.calibrate`), handed to every patch's preprocessing;
    ``precision`` the CPU's arithmetic (``float32`` or ``bfloat16``, :mod:`._precision`);
    ``runtime`` what runs the network on the CPU (``torch`` or ``openvino``).

    Returns
    -------
    maps, valid:
        (K, h, w) float32 maps over the valid region, and that region as local
        (x0, y0, x1, y1) in ``rgb``'s coordinates (empty when no patch fits).
    """
    out, m = model.spec.output_size, model.spec.margin
    ox, oy = origin
    h, w = rgb.shape[:2]
    ex, ey = extent if extent is not None else (None, None)
    xs = patch_grid(ox, w, out, m, ex)
    ys = patch_grid(oy, h, out, m, ey)
    if not xs or not ys:
        return np.zeros((0, 0, 0), np.float32), (0, 0, 0, 0)
    x0, y0 = xs[0] - ox, ys[0] - oy
    valid = (x0, y0, x0 + len(xs) * out, y0 + len(ys) * out)
    starts = [(py - oy, px - ox) for py in ys for px in xs]
    pred = predict_patches(model, rgb, starts, batch_size=batch_size, device=device,
                           calibration=calibration, precision=precision,
                           runtime=runtime)  # fmt: skip
    maps = np.zeros((pred.shape[1], valid[3] - valid[1], valid[2] - valid[0]), np.float32)
    for (ly, lx), p in zip(starts, pred, strict=True):
        maps[:, ly - y0 : ly - y0 + out, lx - x0 : lx - x0 + out] = p
    return maps, valid


_N_MAPS: dict[int, int] = {}


def n_maps(model: DenseModel) -> int:
    """How many maps the network outputs: the model's own count (:attr:`DenseModel.n_maps`),
    else one forward pass of a noise patch, once per model and process (85 ms of a fresh
    worker's first plan for the default U-Net, a serial step of the slide)."""
    if model.n_maps > 0:
        return model.n_maps
    key = id(model)
    if key not in _N_MAPS:
        size = model.spec.input_size
        rng = np.random.default_rng(0)  # any image with a range: some inputs need calibrating
        patch = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        calibration = model.calibrate(patch[0], np.ones((size, size), bool))
        device = pick_device()
        _ready(model, device)
        with torch.inference_mode():
            y = model.forward(model.preprocess(patch, calibration).to(device))
        _N_MAPS[key] = int(y.shape[1])
    return _N_MAPS[key]


#: What maps are kept as between the network and post-processing: the pipeline stores them in
#: the slide's scratch Zarr at this precision, and every other path rounds them the same way,
#: so a map value is the same whether it went through the store or not.
MAPS_DTYPE = np.float16
_TORCH_MAPS_DTYPE = torch.from_numpy(np.zeros(0, MAPS_DTYPE)).dtype


def predict_patches(
    model: DenseModel,
    rgb: np.ndarray,
    starts: list[tuple[int, int]],
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    calibration: Mapping[str, Any] | None = None,
    precision: str = "float32",
    runtime: str = "torch",
) -> np.ndarray:
    """(N, K, out, out) :data:`MAPS_DTYPE` maps of the output patches whose top-left corners
    are ``starts`` = [(y, x), ...] in ``rgb``'s coordinates; each reads ``margin`` px around
    it, which ``rgb`` must hold. All at once: :func:`iter_patches` hands them out batch by
    batch."""
    if not starts:
        k, out = n_maps(model), model.spec.output_size
        return np.zeros((0, k, out, out), MAPS_DTYPE)
    result: np.ndarray | None = None
    done = 0
    for part in iter_patches(model, rgb, starts, batch_size=batch_size, device=device,
                             calibration=calibration, precision=precision,
                             runtime=runtime):  # fmt: skip
        if result is None:  # filled in place: no list of parts and no concatenated copy
            result = np.empty((len(starts), *part.shape[1:]), part.dtype)
        result[done : done + len(part)] = part
        done += len(part)
    assert result is not None
    return result


def iter_patches(
    model: DenseModel,
    rgb: np.ndarray,
    starts: list[tuple[int, int]],
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    calibration: Mapping[str, Any] | None = None,
    precision: str = "float32",
    runtime: str = "torch",
) -> Iterator[np.ndarray]:
    """:func:`predict_patches`' maps one batch at a time, in the order of ``starts``: a caller
    that stores each batch as it comes holds one batch of maps, not the whole tile's (the
    slide pipeline's forward task; 50 MiB less at its peak for a 2048 px tile of U-Net maps)."""
    checked(precision)
    checked_runtime(runtime)
    device = device or pick_device()
    _ready(model, device)
    if not starts:
        return
    batch_size = batch_for(model, device, batch_size, runtime)
    for batch in _batches(model, rgb, starts, batch_size, calibration):
        yield _run(model, batch, batch_size, device, precision, runtime)


def predict_image(
    model: DenseModel,
    rgb: np.ndarray,
    *,
    background: int = 255,
    calibration: Mapping[str, Any] | None = None,
    **kwargs: object,
) -> np.ndarray:
    """Maps of a whole image, padded with ``background`` so the patch grid covers every pixel.

    ``background`` is what lies beyond the image: 255 (glass) for brightfield, 0 for
    fluorescence, as the pipeline's tile store pads. ``calibration`` defaults to the model's
    statistics of the whole image (:meth:`DenseModel.calibrate`, all of it as tissue).
    """
    if calibration is None:
        calibration = model.calibrate(rgb, np.ones(rgb.shape[:2], bool))
    kwargs["calibration"] = calibration
    out, m = model.spec.output_size, model.spec.margin
    h, w = rgb.shape[:2]
    # just enough padding for the ceil(side / out) patches that cover the image, no more
    pad_y, pad_x = (m, -(-h // out) * out - h + m), (m, -(-w // out) * out - w + m)
    padded = np.pad(rgb, (pad_y, pad_x, (0, 0)), constant_values=background)
    maps, (x0, y0, _, _) = predict_region(model, padded, (-m, -m), **kwargs)  # type: ignore[arg-type]
    return maps[:, m - y0 : m - y0 + h, m - x0 : m - x0 + w]


def _batches(
    model: DenseModel,
    rgb: np.ndarray,
    starts: list[tuple[int, int]],
    batch_size: int,
    calibration: Mapping[str, Any] | None,
) -> Iterator[torch.Tensor]:
    """Preprocessed batches of up to ``batch_size`` patches (:func:`_run` fills the last one
    up); the next is prepared in a thread while the current one runs."""
    size, m = model.spec.input_size, model.spec.margin

    def prepare(chunk: list[tuple[int, int]]) -> torch.Tensor:
        stack = np.stack([rgb[y - m : y - m + size, x - m : x - m + size] for y, x in chunk])
        return model.preprocess(stack, calibration)

    chunks = [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(prepare, chunks[0])
        for i in range(len(chunks)):
            batch = nxt.result()
            if i + 1 < len(chunks):
                nxt = pool.submit(prepare, chunks[i + 1])
            yield batch


def _run(
    model: DenseModel,
    batch: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str = "float32",
    runtime: str = "torch",
) -> np.ndarray:
    """(n, K, out, out) :data:`MAPS_DTYPE` maps of one batch of n <= ``batch_size`` patches.

    The network always sees a full batch (the last patch repeated, on the device): kernels are
    chosen by batch size and their float rounding differs, so a patch's maps are then
    bit-identical in every window. Only the n real patches cross to and from the device, and
    they come back already rounded to :data:`MAPS_DTYPE` (half the bytes of float32; on a GPU
    the copies were most of the engine's time around the network). The rounding and the copy
    out of the channels-last layout are done by torch (vectorised): numpy's copies of the
    strided output were a fifth of the engine's CPU time. On the CPU with ``precision``
    ``bfloat16`` the model runs its network's bfloat16 twin (:func:`._twin.bf16_twin`); with
    ``runtime`` ``openvino``, OpenVINO runs it in that precision (:mod:`._openvino`).
    """
    n = batch.shape[0]
    with torch.inference_mode():
        x = batch.to(device, non_blocking=True)
        if n < batch_size:
            x = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])])
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = model.forward(x)
        elif runtime == "openvino":  # takes the batch as it is: (N, C, H, W) float32
            twin = copy.copy(model)  # shallow: the same model but for its network
            shape = (batch_size, *x.shape[1:])
            twin.module = openvino_twin(model, precision, shape, torch.get_num_threads())
            y = twin.forward(x)
        else:
            if model.channels_last_cpu:
                x = x.contiguous(memory_format=torch.channels_last)
            if precision == "bfloat16":
                twin = copy.copy(model)
                twin.module = bf16_twin(model.module)
                y = twin.forward(x)
            else:
                y = model.forward(x)
        y = y[:n].float().to(_TORCH_MAPS_DTYPE)
        return y.contiguous(memory_format=torch.contiguous_format).cpu().numpy()
