"""Workers forget a slide's tile results as the slide goes, not at its end: finalize waits for
one tally per tile row, and the cohort loop releases each tile future once it has finished. A
scheduler plugin records which of the slide's results are still held when finalize starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs, run_cohort

pytestmark = pytest.mark.slow


class _HeldAtFinalize(SchedulerPlugin):
    """The keys in memory on the cluster when a finalize task starts processing."""

    def __init__(self, scheduler: Any) -> None:
        self.held: list[str] | None = None
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if str(key).startswith("finalize-") and finish == "processing":
            tasks = self.scheduler.tasks.values()
            self.held = sorted(str(t.key) for t in tasks if t.state == "memory")


def test_tile_results_are_released_before_finalize(
    cmu1_crop_tiff: Callable[..., Path], tmp_path: Path
) -> None:
    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 0, 1400, 1100, 900)
    slides, rejected = resolve_inputs([str(crop)])
    settings = Settings(segmenter="baseline", tile=256, tissue="none")  # 4 x 5 tiles
    with get_client(workers=2, dashboard_address=None) as client:
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]  # in this process
        plugin = _HeldAtFinalize(scheduler)
        scheduler.add_plugin(plugin)
        rows = run_cohort(client, slides, rejected, settings, tmp_path / "out")
    assert rows[0].status == "done" and (rows[0].nuclei or 0) > 100, rows[0].error
    assert plugin.held is not None
    stages = [k.split("-", 1)[0] for k in plugin.held]
    # the plan (the loop holds it for the slide's tasks) and the row tallies remain, and at
    # most the last tile results whose completion the client had not yet taken in when the
    # scheduler started finalize (its release travels behind); a loop that kept its futures
    # held all 60 ingest, segment and paint results here
    assert stages.count("plan") == 1 and stages.count("tally") == 4, plugin.held
    assert len(stages) - 5 <= 3, plugin.held
