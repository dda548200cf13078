"""The ``Slide`` interface every reader implements.

Coordinates passed to :meth:`Slide.read_region` are in the pixel grid of the requested level
(not level 0, unlike OpenSlide's ``read_region``). Regions reaching outside the image are padded
with white (255), the colour of glass, so a tile at the slide border sees the same pixels
whichever tile asks for them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from nucscale.io._channels import Channel
from nucscale.io._options import DEFAULT, ReadOptions

if TYPE_CHECKING:  # dask.array is imported where used: 0.15 s of every worker's start
    import dask.array as da

PAD_VALUE = 255


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size in pixels and its downsample relative to level 0."""

    width: int
    height: int
    downsample: float


class Slide(abc.ABC):
    """A whole-slide image or plain image, read as RGB uint8.

    Subclasses set ``backend``, fill ``_levels``, ``_file_mpp`` (and ``_vendor``) when they
    open the file, and implement ``_read(level, x, y, w, h)`` for regions fully inside the
    level; padding is done here. ``mpp`` given at construction overrides the file's value;
    ``options`` are the user's read choices (channel, intensity range, Z plane).

    Readers of multi-channel or more-than-8-bit data describe what they did: ``channels``
    (every channel the file has, as :class:`~nucscale.io._channels.Channel`), ``read_notes``
    (JSON-able: the channel read and why, the intensity window and its source, the Z plane),
    recorded in each slide's provenance and shown by ``nucscale info``; ``bit_depth`` and
    ``dims`` (e.g. ``{"z": 1, "t": 1, "c": 3}``) describe the stored samples.
    """

    backend: str = "abstract"

    def __init__(
        self, path: str | Path, mpp: float | None = None, options: ReadOptions = DEFAULT
    ) -> None:
        self.path = Path(path)
        self.options = options
        self._levels: tuple[Level, ...] = ()
        self._file_mpp: float | None = None
        self._mpp_override = mpp
        self._vendor: str | None = None
        self.channels: tuple[Channel, ...] = ()
        self.read_notes: dict[str, object] = {}
        self.bit_depth: int | str = 8
        self.dims: dict[str, int] = {}
        #: What lies outside the image (and in tiles a sparse file lacks): glass (255) unless a
        #: reader knows it reads a fluorescence channel (0, no signal).
        self.background: int = PAD_VALUE

    # -- metadata -----------------------------------------------------------------------------
    @property
    def levels(self) -> tuple[Level, ...]:
        """Pyramid levels, largest first."""
        return self._levels

    @property
    def mpp(self) -> float | None:
        """Pixel size of level 0 in µm/px (mean of x and y), or ``None`` when unknown."""
        return self._mpp_override if self._mpp_override is not None else self._file_mpp

    @property
    def vendor(self) -> str | None:
        """Scanner vendor or format family, when the file says."""
        return self._vendor

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        lv = self.levels[0]
        return lv.width, lv.height

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((lv.width, lv.height) for lv in self.levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(lv.downsample for lv in self.levels)

    def level_mpp(self, level: int) -> float | None:
        """Pixel size of ``level`` in µm/px."""
        return None if self.mpp is None else self.mpp * self.levels[level].downsample

    # -- pixels -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 array (h, w, 3) for a region fully inside ``level``."""

    def read_region(
        self, level: int, x: int, y: int, w: int, h: int, fill: int | None = None
    ) -> np.ndarray:
        """Read a region of ``level`` as RGB uint8 (h, w, 3); outside the image is ``fill``
        (default: the slide's ``background``, white glass for brightfield).

        Parameters
        ----------
        level:
            Pyramid level index (0 is full resolution).
        x, y:
            Top-left corner in that level's pixel coordinates (may be negative).
        w, h:
            Size of the region in pixels.
        fill:
            The value beyond the image: the pipeline passes its modality's background (255
            brightfield, 0 fluorescence), as its tile store pads.
        """
        if not 0 <= level < len(self.levels):
            raise IndexError(f"{self.path}: level {level} out of range 0..{len(self.levels) - 1}")
        pad = self.background if fill is None else fill
        if w <= 0 or h <= 0:
            return np.full((max(h, 0), max(w, 0), 3), pad, np.uint8)
        lw, lh = self.levels[level].width, self.levels[level].height
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        if x0 == x and y0 == y and x1 == x + w and y1 == y + h:
            return self._read(level, x, y, w, h)
        out = np.full((h, w, 3), pad, np.uint8)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read(level, x0, y0, x1 - x0, y1 - y0)
        return out

    def to_dask(self, level: int = 0, chunk: int = 2048) -> da.Array:
        """The level as a lazy dask array (h, w, 3) uint8.

        Each chunk re-opens the slide by path through the per-process cache, so the graph holds
        no file handle and pickles to any worker.
        """
        import dask.array as da

        from nucscale.io._open import read_region_cached

        lw, lh = self.levels[level].width, self.levels[level].height
        path, options = str(self.path), self.options

        def block(block_info: dict | None = None) -> np.ndarray:
            assert block_info is not None  # dask always passes it to a block function
            (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
            return read_region_cached(path, level, x0, y0, x1 - x0, y1 - y0, options)

        chunks = (_splits(lh, chunk), _splits(lw, chunk), (3,))
        return da.map_blocks(
            block, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8)
        )

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook, most readers hold nothing
        """Release file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        name = type(self).__name__
        return f"<{name} {self.path.name!r} {w}x{h} levels={len(self.levels)} mpp={self.mpp}>"

    def best_level_for_downsample(self, downsample: float) -> int:
        """Index of the smallest level whose downsample does not exceed ``downsample``."""
        best = 0
        for i, lv in enumerate(self.levels):
            if lv.downsample <= downsample * (1 + 1e-6):
                best = i
        return best


def _splits(n: int, size: int) -> tuple[int, ...]:
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())
