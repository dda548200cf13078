"""Tile grid geometry, tissue tiles and level choice."""

from __future__ import annotations

import numpy as np
import pytest

from nucscale.io import Level, Slide
from nucscale.tiling import Box, TileGrid, choose_level, tissue_tiles


def test_grid_covers_image_exactly_once() -> None:
    g = TileGrid(width=1000, height=700, tile=256, halo=40)
    assert (g.n_rows, g.n_cols) == (3, 4)
    cover = np.zeros((700, 1000), np.int32)
    for r in range(g.n_rows):
        for c in range(g.n_cols):
            b = g.core(r, c)
            cover[b.y0 : b.y1, b.x0 : b.x1] += 1
    assert (cover == 1).all()
    assert g.core(2, 3) == Box(768, 512, 1000, 700)
    assert g.window(0, 0) == Box(-40, -40, 296, 296)
    assert g.index(2, 3) == 11
    assert sorted(g.neighbours(0, 0)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(g.neighbours(1, 1)) == 9
    assert TileGrid(1000, 700, 64, 100).reach == 2


def test_tissue_tiles_follow_the_mask() -> None:
    g = TileGrid(width=400, height=400, tile=100, halo=10)
    mask = np.zeros((40, 40), bool)  # 10 analysis px per mask px
    mask[12:14, 32:34] = True  # analysis y 120-140, x 320-340 -> tile (1, 3)
    assert tissue_tiles(g, mask, mask_scale=10.0) == [(1, 3)]
    assert tissue_tiles(g, np.zeros((40, 40), bool), 10.0) == []


class _FakePyramid(Slide):
    """Geometry only, for level choice (no pixels are read)."""

    backend = "test"

    def __init__(self, mpp: float, downsamples: list[float]) -> None:
        super().__init__("pyramid.test")
        self._levels = tuple(Level(int(40000 / d), int(30000 / d), d) for d in downsamples)
        self._mpp = mpp

    @property
    def levels(self) -> tuple[Level, ...]:
        return self._levels

    @property
    def mpp(self) -> float | None:
        return self._mpp

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("mpp0", "downsamples", "target", "level", "factor", "analysis_mpp"),
    [
        (0.499, [1], 0.5, 0, 1.0, 0.499),  # within tolerance: used as is
        (0.25, [1, 4, 16], 0.5, 0, 2.0, 0.5),  # 40x: level 0 shrunk by 2
        (0.25, [1, 2, 8], 0.5, 1, 1.0, 0.5),  # exact level
        (0.23, [1, 4, 16], 0.5, 0, 0.5 / 0.23, 0.5),
        (1.0, [1, 4], 0.5, 0, 0.5, 0.5),  # coarser than asked: upsampled
    ],
)
def test_choose_level(
    mpp0: float,
    downsamples: list[float],
    target: float,
    level: int,
    factor: float,
    analysis_mpp: float,
) -> None:
    slide = _FakePyramid(mpp0, downsamples)
    ch = choose_level(slide, mpp0, target, tolerance=0.05)
    assert ch.level == level
    assert ch.factor == pytest.approx(factor)
    assert ch.mpp == pytest.approx(analysis_mpp)
    lw = slide.levels[level].width
    assert ch.width == round(lw / factor)


def test_windows_reach_halo_beyond_their_cores() -> None:
    g = TileGrid(width=1000, height=700, tile=256, halo=288)
    assert g.window(0, 0) == Box(-288, -288, 256 + 288, 256 + 288)
    # the last core is cut at the image (1000 x 700); its window still reaches halo beyond it
    assert g.window(g.n_rows - 1, g.n_cols - 1) == Box(768 - 288, 512 - 288, 1288, 988)
