"""Negatives from real unlabelled brightfield slides: patches of bare glass, label 0 everywhere.

DSB 2018's H&E fields hold little glass, and none of a scanner's glass (dust, scratches, the
faint colour cast of the mounting medium, the out-of-focus haze at a tissue edge). A network that
never saw it outlines specks on the glass as nuclei. Any unlabelled slide gives these patches
for free: where the slide's tissue mask (the one the pipeline uses) finds no tissue within a
margin, there is no nucleus. Only glass is taken, never tissue, so no unlabelled tissue pixel
enters training as "no nucleus".
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from nucscale.errors import InputError
from nucscale.io import open_slide
from nucscale.tiling import Box, choose_level, low_res_image, read_analysis_region, tissue_mask_for
from nucscale.train._data import Sample

log = logging.getLogger(__name__)

#: Glass patches keep this far from the nearest tissue, µm.
TISSUE_MARGIN_UM = 50.0


def glass_samples(
    path: str | PathLike[str],
    mpp: float,
    *,
    count: int = 16,
    size: int = 320,
    seed: int = 0,
    slide_mpp: float | None = None,
) -> list[Sample]:
    """Up to ``count`` glass patches of ``size`` px at ``mpp`` µm/px from the slide at ``path``.

    Patch centres are drawn (seeded) among low-resolution pixels at least ``size / 2`` analysis
    px plus :data:`TISSUE_MARGIN_UM` from any tissue. Fewer patches (maybe none) come back from
    a slide with little glass.
    """
    p = Path(path)
    with open_slide(p, mpp=slide_mpp) as slide:
        mpp0 = slide.mpp if slide.mpp is not None else slide_mpp
        if mpp0 is None:
            raise InputError(p, "no pixel size in metadata; give the negatives slide's mpp")
        thumb, ds = low_res_image(slide, 2048)
        mask = tissue_mask_for(thumb, "brightfield")
        choice = choose_level(slide, mpp0, mpp, 0.05)
    thumb_mpp = mpp0 * ds
    clearance = (size / 2 * mpp * np.sqrt(2) + TISSUE_MARGIN_UM) / thumb_mpp
    far = ndi.distance_transform_edt(~mask) > clearance
    # the patch must also lie inside the slide
    edge = int(np.ceil(size / 2 * mpp / thumb_mpp)) + 1
    far[:edge], far[-edge:], far[:, :edge], far[:, -edge:] = False, False, False, False
    ys, xs = np.nonzero(far)
    if ys.size == 0:
        log.info("%s: no glass far enough from tissue for negatives", p)
        return []
    rng = np.random.default_rng([seed, ys.size])
    picks = rng.choice(ys.size, size=min(count, ys.size), replace=False)
    scale = thumb_mpp / choice.mpp  # analysis px per thumbnail px
    out = []
    for k, i in enumerate(sorted(picks.tolist())):
        cx, cy = round((xs[i] + 0.5) * scale), round((ys[i] + 0.5) * scale)
        box = Box(cx - size // 2, cy - size // 2, cx - size // 2 + size, cy - size // 2 + size)
        rgb = read_analysis_region(str(p), choice, box)
        labels = np.zeros((size, size), np.int32)
        out.append(Sample(f"{p.stem}-glass-{k}", "brightfield_he", rgb, labels, mpp, "slide"))
    return out
