"""Tiled = whole-image on real pixels: every tile size gives the nuclei of one single tile.

On the crop tissue detection is off (``tissue="none"``) so every tile is processed: what is
compared is the stitching. On the whole CMU-1 region it is on (the default settings), where the
tissue rule must not depend on the tile size either.

A single 4096 px tile holds all of CMU-1-Small-Region (2220 x 2967 px) and all of the crop, so
its output *is* whole-image processing through the same code. Each smaller tile size must give
the same nuclei: the same label partition (pixel for pixel, up to the ids, which encode the
owning tile) and the same feature rows. That is stricter than the PQ >= 0.99 / count within
0.5 % the project asks for; the PQ is asserted as well, as the measured figure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nucscale.analysis import compare_runs, read_run
from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.io import open_slide
from nucscale.pipeline import resolve_inputs, run_cohort

pytestmark = pytest.mark.slow


def _run(slide: Path, settings: Settings, out: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    slides, rejected = resolve_inputs([str(slide)])
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, settings, out)
    assert rows[0].status == "done", rows[0].error
    return read_run(out, slides[0].slide_id)


def assert_same_nuclei(
    a: tuple[np.ndarray, dict[str, np.ndarray]], b: tuple[np.ndarray, dict[str, np.ndarray]]
) -> None:
    """Same partition of the pixels into nuclei, same feature rows, PQ 1."""
    diff = compare_runs(a, b)
    assert diff["same_partition"], diff
    assert diff["same_features"], diff
    assert diff["count_diff_pct"] == 0.0 and diff["pq"] == 1.0, diff


@pytest.fixture(scope="module")
def cmu1_crop(
    cmu1_crop_tiff: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 1200 x 1000 px piece of CMU-1 (dense tissue) as a flat TIFF with its pixel size."""
    dest = tmp_path_factory.mktemp("crop") / "cmu1-crop.tif"
    return cmu1_crop_tiff(dest, 600, 1200, 1200, 1000)


@pytest.mark.parametrize("segmenter", ["baseline", "unet"])
def test_every_tile_size_gives_the_whole_image_nuclei(
    segmenter: str, cmu1_crop: Path, tmp_path: Path
) -> None:
    def settings(tile: int) -> Settings:
        return Settings(segmenter=segmenter, tile=tile, tissue="none")

    whole = _run(cmu1_crop, settings(4096), tmp_path / "4096")
    assert len(whole[1]["area"]) > 300
    for tile in (256, 512, 1024, 2048):
        assert_same_nuclei(_run(cmu1_crop, settings(tile), tmp_path / str(tile)), whole)


@pytest.mark.parametrize("segmenter", ["baseline", "unet"])
def test_default_settings_on_the_whole_cmu1_region(
    segmenter: str, cmu1_svs: Path, tmp_path: Path
) -> None:
    """Tissue detection on (the default): CMU-1 is 39 % glass, so tiles at every size are
    partly tissue. Nuclei are kept by their centroid on the thumbnail's fixed tissue grid and
    every segmented window holds real pixels, so the tile size still changes nothing."""
    whole = _run(cmu1_svs, Settings(segmenter=segmenter, tile=4096), tmp_path / "4096")
    assert len(whole[1]["area"]) > 1500
    for tile in (256, 1024):
        tiled = _run(cmu1_svs, Settings(segmenter=segmenter, tile=tile), tmp_path / str(tile))
        assert_same_nuclei(tiled, whole)


def test_baseline_on_a_generated_mosaic(cmu1_svs: Path, tmp_path: Path) -> None:
    """A 2 x 2 mirrored mosaic (2400 x 2000 px) of a CMU-1 piece, as a pyramidal TIFF."""
    from nucscale.io import mosaic, write_pyramidal_tiff

    with open_slide(cmu1_svs) as s:
        rgb = s.read_region(0, 600, 1200, 1200, 1000)
    slide = tmp_path / "mosaic.tif"
    write_pyramidal_tiff(mosaic(rgb, 2, 2), slide, mpp=0.499)
    whole = _run(slide, Settings(segmenter="baseline", tile=4096, tissue="none"), tmp_path / "4096")
    assert len(whole[1]["area"]) > 1500
    for tile in (512, 1024):
        tiled = _run(
            slide, Settings(segmenter="baseline", tile=tile, tissue="none"), tmp_path / str(tile)
        )
        assert_same_nuclei(tiled, whole)
