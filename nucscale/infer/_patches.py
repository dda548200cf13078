"""The global patch grid: where a network's output patches sit, as plain integers.

Output patches start at multiples of the model's ``output_size`` in slide coordinates and read
``margin`` px around them (:mod:`._engine`). These functions only place them, without torch:
the plan's module uses them, and the ``nucscale`` command's own process imports it.
"""

from __future__ import annotations

import math

from nucscale.tiling._grid import Box


def patch_grid(
    origin: int, size: int, out: int, margin: int, extent: int | None = None
) -> list[int]:
    """Global starts of output patches whose input lies inside [origin, origin + size) and,
    given ``extent``, whose output overlaps the image's [0, extent)."""
    first = math.ceil((origin + margin) / out) * out
    last = math.floor((origin + size - out - margin) / out) * out
    if extent is not None:
        first = max(first, 0)  # the first patch whose output overlaps [0, extent)
        last = min(last, (extent - 1) // out * out)
    return list(range(first, last + 1, out)) if last >= first else []


def patch_starts(core: Box, extent: tuple[int, int], out: int) -> list[tuple[int, int]]:
    """Global (y, x) starts of the output patches (multiples of ``out``) that start in
    ``core`` and overlap the image of size ``extent`` (w, h): each patch of the slide belongs
    to exactly one tile core."""
    w, h = extent
    xs = range(-(-core.x0 // out) * out, min(core.x1, w), out)
    ys = range(-(-core.y0 // out) * out, min(core.y1, h), out)
    return [(y, x) for y in ys for x in xs]
