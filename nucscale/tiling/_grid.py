"""The tile grid in analysis pixels, and the choice of pyramid level and resampling factor.

A tile is a *core* of ``tile`` x ``tile`` analysis pixels on a global grid anchored at (0, 0);
its *window* is the core grown by ``halo`` on every side (it may reach outside the image, where
pixels are white). Tiles are indexed (row, col); ``index = row * n_cols + col``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nucscale.io import Slide


@dataclass(frozen=True)
class Box:
    """Half-open pixel box [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def intersect(self, other: Box) -> Box | None:
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        return Box(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` px cores with ``halo`` px context over a ``width`` x ``height`` image."""

    width: int
    height: int
    tile: int
    halo: int

    @property
    def n_rows(self) -> int:
        return math.ceil(self.height / self.tile)

    @property
    def n_cols(self) -> int:
        return math.ceil(self.width / self.tile)

    def index(self, row: int, col: int) -> int:
        return row * self.n_cols + col

    def core(self, row: int, col: int) -> Box:
        t = self.tile
        return Box(
            col * t, row * t, min((col + 1) * t, self.width), min((row + 1) * t, self.height)
        )

    def window(self, row: int, col: int) -> Box:
        c, h = self.core(row, col), self.halo
        return Box(c.x0 - h, c.y0 - h, c.x1 + h, c.y1 + h)

    def neighbours(self, row: int, col: int, reach: int = 1) -> list[tuple[int, int]]:
        """Tiles within ``reach`` rows/cols of (row, col), itself included, inside the grid."""
        return [
            (r, c)
            for r in range(max(0, row - reach), min(self.n_rows, row + reach + 1))
            for c in range(max(0, col - reach), min(self.n_cols, col + reach + 1))
        ]

    @property
    def reach(self) -> int:
        """How many tiles away a tile's window reaches (1 when halo <= tile)."""
        return max(1, math.ceil(self.halo / self.tile))


def tissue_tiles(grid: TileGrid, mask: np.ndarray, mask_scale: float) -> list[tuple[int, int]]:
    """Tiles whose core overlaps the tissue mask.

    ``mask_scale`` is the number of analysis pixels per mask pixel. The core is mapped to mask
    pixels with outward rounding, so a tile touching tissue by a fraction of a mask pixel counts.
    """
    out = []
    mh, mw = mask.shape
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            b = grid.core(r, c)
            y0, x0 = int(b.y0 / mask_scale), int(b.x0 / mask_scale)
            y1 = min(mh, math.ceil(b.y1 / mask_scale) + 1)
            x1 = min(mw, math.ceil(b.x1 / mask_scale) + 1)
            if mask[y0:y1, x0:x1].any():
                out.append((r, c))
    return out


@dataclass(frozen=True)
class LevelChoice:
    """Which level to read and how much to shrink it to reach the analysis pixel size."""

    level: int
    factor: float  # level px per analysis px (>= 1 shrinks); exactly 1.0 means no resampling
    mpp: float  # analysis pixel size actually used, µm/px
    width: int  # analysis image size
    height: int


def choose_level(slide: Slide, mpp0: float, target_mpp: float, tolerance: float) -> LevelChoice:
    """Pick the coarsest level not coarser than ``target_mpp`` and the resampling factor.

    When a level is within ``tolerance`` (relative) of the target, it is used as it is and the
    analysis pixel size is that level's own (resampling 0.499 -> 0.5 µm/px would only blur).
    """
    best = 0
    for i, lv in enumerate(slide.levels):
        if mpp0 * lv.downsample <= target_mpp * (1 + tolerance):
            best = i
    level_mpp = mpp0 * slide.levels[best].downsample
    lw, lh = slide.level_dimensions[best]
    if abs(level_mpp / target_mpp - 1) <= tolerance:
        return LevelChoice(best, 1.0, level_mpp, lw, lh)
    factor = target_mpp / level_mpp
    return LevelChoice(
        best, factor, target_mpp, max(1, round(lw / factor)), max(1, round(lh / factor))
    )
