"""Retries: an input error is attempted once; any other error is still retried.

The scheduler itself counts the attempts: a scheduler plugin records every transition of a task
into ``processing`` (once per attempt, whether a retry or a reschedule after a lost worker).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tifffile
from distributed import Client, SchedulerPlugin

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.io import open_slide, write_pyramidal_tiff
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.pipeline._cohort import RETRIES
from nucscale.store import read_manifest

pytestmark = pytest.mark.slow


class _Attempts(SchedulerPlugin):
    """Counts, per task key, how often the scheduler sent the task to a worker."""

    name = "test-attempts"

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "processing":
            self.started[str(key)] += 1


def _attempts(client: Client) -> Counter[str]:
    def read(dask_scheduler: Any) -> dict[str, int]:
        return dict(dask_scheduler.plugins[_Attempts.name].started)

    return Counter(client.run_on_scheduler(read))


def _corrupt_level0(cmu1_svs: Path, dest: Path) -> Path:
    """CMU-1 as a pyramidal TIFF whose level-0 tiles are damaged: planning (which reads a low
    level) succeeds, every tile read for the analysis fails with a SlideReadError."""
    with open_slide(cmu1_svs) as slide:
        rgb = slide.read_region(0, 0, 0, slide.levels[0].width, slide.levels[0].height)
    write_pyramidal_tiff(rgb, dest, mpp=0.499, compression="deflate")
    with tifffile.TiffFile(dest) as tif:
        tiles = list(zip(tif.pages[0].dataoffsets, tif.pages[0].databytecounts, strict=True))
    with dest.open("r+b") as fh:
        for offset, size in tiles:
            fh.seek(offset)
            fh.write(b"\xff" * min(size, 64))
    return dest


def test_input_errors_are_attempted_once_other_errors_are_retried(
    cmu1_svs: Path, openslide_fixtures: Path, tmp_path: Path
) -> None:
    raw = cmu1_svs.read_bytes()
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "empty.svs").write_bytes(b"")
    (bad / "truncated.svs").write_bytes(raw[: len(raw) // 2])
    csv = tmp_path / "cohort.csv"
    lines = ["path,slide_id", f"{bad / 'empty.svs'},empty", f"{bad / 'truncated.svs'},truncated"]
    lines += [f"{openslide_fixtures / 'unreadable.svs'},corrupt"]  # fails reading its thumbnail
    lines += [f"{_corrupt_level0(cmu1_svs, bad / 'tiles.ome.tif')},tiles"]
    lines += [f"{openslide_fixtures / 'small.svs'},blocked"]  # a fine slide, scratch blocked
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    (out / ".work").mkdir(parents=True)
    (out / ".work" / "blocked").write_text("a file where the slide's scratch folder goes\n")
    slides, rejected = resolve_inputs([str(csv)])
    with get_client(workers=1, dashboard_address=":0") as client:
        client.register_plugin(_Attempts())
        settings = Settings(segmenter="baseline", tissue_max_size=1024)  # plan from level 2
        rows = run_cohort(client, slides, rejected, settings, out)
        started = _attempts(client)
    assert {r.slide_id: r.status for r in rows} == dict.fromkeys(
        ("empty", "truncated", "corrupt", "tiles", "blocked"), "failed"
    )

    def tries(prefix: str) -> list[int]:
        return [n for key, n in started.items() if key.startswith(prefix)]

    assert tries("plan-empty-") == [1] and tries("plan-truncated-") == [1]
    assert tries("plan-corrupt-") == [1] and tries("plan-tiles-") == [1]
    tiles = tries("ingest-tiles-")
    assert tiles and max(tiles) == 1  # a damaged tile is read once, not thrice
    assert tries("plan-blocked-") == [1 + RETRIES]  # not an input error: retried as before
    errors = {sid: r.error or "" for (sid, _), r in read_manifest(out).items()}
    assert errors["empty"].startswith(f"{bad / 'empty.svs'}: empty file")
    assert errors["truncated"].startswith(f"{bad / 'truncated.svs'}: TIFF holds no image")
    assert "unreadable.svs" in errors["corrupt"]
    assert errors["tiles"].startswith(f"{bad / 'tiles.ome.tif'}: cannot decode level 0 region")
    assert "FileExistsError" in errors["blocked"] and "\n" not in errors["blocked"]
