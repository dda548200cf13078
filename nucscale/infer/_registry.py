"""Segmenters by name, built once per worker process.

:func:`get_segmenter` caches instances keyed by ``(name, sorted params)``, so a model's weights
load once per process however many tasks ask for it (DESIGN: "Model weights are loaded once
per worker process"). The cache lives in the process; a Dask worker fills its own.
"""

from __future__ import annotations

import threading
from typing import Any

from nucscale.errors import SegmenterError
from nucscale.infer._baseline import BaselineSegmenter
from nucscale.infer._segmenter import Segmenter

#: Registry name -> segmenter class.
SEGMENTERS: dict[str, type[Segmenter]] = {BaselineSegmenter.name: BaselineSegmenter}

_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], Segmenter] = {}
_LOCK = threading.Lock()


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
    key = (name, tuple(sorted(params.items())))
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
