"""Which nucleus each pixel of a window belongs to, for the measurement families."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Owned(NamedTuple):
    """The pixels of the nuclei ``ids`` of a label window."""

    image: np.ndarray  # (h, w) row of the nucleus owning each pixel in ``ids``, else -1
    rr: np.ndarray  # rows of the owned pixels, row-major order
    cc: np.ndarray  # their columns
    owner: np.ndarray  # their nucleus's row in ``ids``


def owned_pixels(labels: np.ndarray, ids: np.ndarray) -> Owned:
    """Owner image and pixel lists of the nuclei ``ids`` (other labels count as background)."""
    row_of = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    row_of[ids] = np.arange(len(ids))
    image = row_of[labels]
    rr, cc = np.nonzero(image >= 0)
    return Owned(image, rr, cc, image[rr, cc])
