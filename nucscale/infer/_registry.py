"""Segmenters by name, built once per worker process.

:func:`get_segmenter` caches instances keyed by ``(name, sorted params)``, so a model's weights
load once per process however many tasks ask for it (DESIGN: "Model weights are loaded once
per worker process"). The cache lives in the process; a Dask worker fills its own.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from nucscale.contracts import Segmenter
from nucscale.errors import SegmenterError
from nucscale.infer._baseline import BaselineSegmenter
from nucscale.infer._redcells import RedCellSegmenter


def _bioimageio(
    weights: str | None = None,
    modality: str = "fluorescence",
    mpp: float | None = None,
    weights_format: str | None = None,
    *,
    foreground_channel: int = 0,
    threshold: float = 0.5,
    h: float = 1.0,
    min_size: int = 20,
    max_diameter: int = 120,
) -> Segmenter:
    """A bioimage.io model package (``--model bioimageio --weights PACKAGE``).

    ``weights`` is the package (folder, YAML or .zip); ``mpp`` its working pixel size when the
    package declares none (``--analysis-mpp``; refused without it); ``weights_format``
    ``torchscript`` or ``onnx`` (``--weights-format``). The watershed parameters turn the
    probability map into nuclei (px at the model's pixel size). Tiles default to 2048 px, as
    for every network.
    """
    from nucscale.infer._dense import DenseSegmenter
    from nucscale.models.bioimageio import BioImageIOModel

    if weights is None:
        raise SegmenterError(
            "bioimageio: pass the model package (folder, bioimageio.yaml or .zip) with --weights"
        )
    model = BioImageIOModel(
        weights,
        mpp=mpp,
        modality=modality,
        weights_format=weights_format,
        foreground_channel=foreground_channel,
        threshold=threshold,
        h=h,
        min_size=min_size,
        max_diameter=max_diameter,
    )
    return DenseSegmenter(model, batch_size=model.batch_size)


def _unet(
    weights: str | None = None,
    modality: str = "brightfield",
    cpu_precision: str = "auto",
    cpu_runtime: str = "auto",
) -> Segmenter:
    """nucscale's own U-Net (``--model unet``); without ``--weights`` the shipped default model.
    The slide's modality decides how its pixels become the network's input; ``cpu_precision``
    its arithmetic on the CPU (``auto``: bfloat16 where the CPU computes it natively, held-out
    scores unchanged) and ``cpu_runtime`` what runs it there (``auto``: OpenVINO where
    installed; :mod:`nucscale.infer._precision`)."""
    from nucscale.infer._dense import DenseSegmenter
    from nucscale.infer._precision import cpu_precision as precision
    from nucscale.infer._precision import cpu_runtime as runtime
    from nucscale.models.unet import UNetModel

    return DenseSegmenter(
        UNetModel(weights, modality=modality),
        precision=precision(cpu_precision),
        runtime=runtime(cpu_runtime),
    )


def _hovernet(
    weights: str | None = None, mode: str = "fast", cpu_runtime: str = "auto"
) -> Segmenter:
    """HoVer-Net from an official-format checkpoint (``--model hovernet --weights CKPT``).

    The number of types comes from the checkpoint's type branch (``decoder.tp.u0.conv``): 6 is
    read as PanNuke's label set, 5 as CoNSeP's; none means a segmentation-only model.
    ``cpu_runtime`` as the U-Net's; the arithmetic stays float32 (bfloat16 halves OpenVINO's
    time again but moves the logits by ~5 %, which no released checkpoint could be scored
    against here).
    """
    from nucscale.infer._dense import DenseSegmenter
    from nucscale.infer._precision import cpu_runtime as runtime
    from nucscale.models._checkpoint import load_checkpoint
    from nucscale.models.hovernet import HoVerNet

    if weights is None:
        raise SegmenterError(
            "hovernet: pass a checkpoint with --weights (e.g. the released PanNuke or CoNSeP "
            "hovernet_*_pytorch.tar)"
        )
    if mode not in ("fast", "original"):
        raise SegmenterError(f"hovernet: mode must be fast or original, got {mode!r}")
    tp = load_checkpoint(weights).get("decoder.tp.u0.conv.weight")
    nr_types = None if tp is None else int(tp.shape[0])
    type_set = {6: "pannuke", 5: "consep"}.get(nr_types) if nr_types else None
    model = HoVerNet(mode, nr_types, type_set, weights)  # type: ignore[arg-type]
    return DenseSegmenter(model, runtime=runtime(cpu_runtime))


#: Registry name -> segmenter class or factory (keyword parameters only).
SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    BaselineSegmenter.name: BaselineSegmenter,
    RedCellSegmenter.name: RedCellSegmenter,
    "unet": _unet,
    "bioimageio": _bioimageio,
    "hovernet": _hovernet,
}


#: Segmenters that, built without ``weights``, load only what nucscale ships (the default
#: U-Net's packaged weights): nothing of theirs comes from the user.
SHIPPED: frozenset[str] = frozenset({"unet"})


def accepts(name: str, param: str) -> bool:
    """Whether segmenter ``name`` takes the keyword parameter ``param``."""
    factory = SEGMENTERS.get(name)
    return factory is not None and param in inspect.signature(factory).parameters


_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], Segmenter] = {}
_LOCK = threading.Lock()


def _with_defaults(factory: Callable[..., Segmenter], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the factory's defaults for those not given: the cache key of a build,
    so that a parameter passed at its default value (the plan asks the segmenter's pixel size
    without the slide's modality, then builds it with ``modality="brightfield"``) reuses the
    same instance instead of loading the weights again. Parameters the factory does not take
    are left as given (the factory refuses them)."""
    signature = inspect.signature(factory)
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in signature.parameters.values()):
        return params
    try:
        bound = signature.bind(**params)
    except TypeError:
        return params
    bound.apply_defaults()
    return dict(bound.arguments)


def get_segmenter(name: str, **params: Any) -> Segmenter:
    """The segmenter ``name`` built with ``params``, shared within this process.

    Parameters
    ----------
    name:
        A key of :data:`SEGMENTERS`.
    **params:
        Keyword arguments of the segmenter's constructor; values must be hashable.

    Returns
    -------
    Segmenter
        The same instance for the same name and parameters.

    Raises
    ------
    SegmenterError
        ``name`` is unknown (the message lists the known names), a parameter value is not
        hashable, or the constructor rejects the parameters.
    """
    try:
        cls = SEGMENTERS[name]
    except KeyError:
        known = ", ".join(sorted(SEGMENTERS))
        raise SegmenterError(f"unknown segmenter {name!r}; known: {known}") from None
    key = (name, tuple(sorted(_with_defaults(cls, params).items())))
    try:
        hash(key)
    except TypeError as exc:
        raise SegmenterError(f"segmenter {name!r}: parameters must be hashable: {exc}") from exc
    with _LOCK:  # threaded Dask workers: build once, not once per thread
        segmenter = _CACHE.get(key)
        if segmenter is None:
            try:
                segmenter = cls(**params)
            except TypeError as exc:
                raise SegmenterError(f"segmenter {name!r}: bad parameters: {exc}") from exc
            _CACHE[key] = segmenter
    return segmenter
