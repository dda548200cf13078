"""The task graph of one planned slide, as plain data: which tasks, their keys, what each
waits for, and where it may run. A pure function of the plan (no cluster, no Dask), so a test
reads the graph directly; :mod:`nucscale.pipeline._cohort` submits it as it is.

    ingest(r,c) ─▶ forward(r,c) [network, GPU resource] ─▶ instances(r,c) ─▶ paint(r,c)
               └─▶ segment(r,c) [one-stage segmenters]  ──────────────────▶ paint(r,c)
    every task of tile row r ─▶ tally(r) [urgent] ─▶ finalize

Finalize waits for one tally per tile row rather than for every task, and a tally runs as soon
as it can (priority): so the cluster forgets a row's tasks and results once the row is painted
instead of holding the whole slide's until the end.

Keys are ``<stage>-<slide_id>-<settings key>-<row>-<col>`` (``tally-…-<row>``,
``finalize-<slide_id>-<key>``): deterministic, so a task resubmitted while the scheduler still
knows it is not run twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nucscale.pipeline._plan import SlidePlan
from nucscale.pipeline._tasks import (
    finalize_slide,
    forward_tile,
    ingest_tile,
    instances_tile,
    paint_chunk,
    segment_tile,
    tally_tasks,
)

Tile = tuple[int, int]


@dataclass(frozen=True)
class TaskSpec:
    """One task: ``fn(plan, row, col, *deps)`` (tally and finalize: ``fn(plan, *groups)``, each
    group a list of dependency results). ``gpu``: needs the ``GPU`` resource; otherwise, on a
    cluster with GPU workers, it runs on the workers without one. ``priority``: Dask's task
    priority (higher runs first among ready tasks)."""

    key: str
    stage: str
    fn: Callable[..., Any]
    tile: Tile | None
    deps: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = field(default=())  # tally and finalize only
    gpu: bool = False
    priority: int = 0


def slide_graph(plan: SlidePlan) -> list[TaskSpec]:
    """The slide's tasks in submission order (dependencies first); the last is finalize."""
    tag = f"{plan.slide_id}-{plan.key}"
    grid = plan.grid

    def key(stage: str, t: Tile) -> str:
        return f"{stage}-{tag}-{t[0]}-{t[1]}"

    def around(t: Tile, reach: int, done: dict[Tile, str]) -> tuple[str, ...]:
        return tuple(done[n] for n in grid.neighbours(*t, reach) if n in done)

    specs: list[TaskSpec] = []

    def add(stage: str, fn: Callable[..., Any], t: Tile, deps: tuple[str, ...], gpu: bool) -> str:
        specs.append(TaskSpec(key(stage, t), stage, fn, t, deps, gpu=gpu))
        return specs[-1].key

    ingest = {t: add("ingest", ingest_tile, t, (), False) for t in plan.ingest_tiles()}
    forward: dict[Tile, str] = {}
    if plan.dense:
        for t in plan.forward_tiles():
            forward[t] = add("forward", forward_tile, t, around(t, plan.input_reach, ingest), True)
        segment = {
            t: add("instances", instances_tile, t,
                   around(t, plan.maps_reach, forward) + around(t, grid.reach, ingest), False)
            for t in plan.tiles
        }  # fmt: skip
    else:
        segment = {
            t: add("segment", segment_tile, t, around(t, grid.reach, ingest), plan.accelerated)
            for t in plan.tiles
        }
    paint = {
        t: add("paint", paint_chunk, t, around(t, grid.reach, segment), False)
        for t in plan.paint_tiles()
    }
    rows: dict[int, list[list[str]]] = defaultdict(lambda: [[], [], [], []])
    for i, stage in enumerate((ingest, segment, paint, forward)):  # tally_tasks' argument order
        for t, k in stage.items():
            rows[t[0]][i].append(k)
    tallies = [
        TaskSpec(f"tally-{tag}-{r}", "tally", tally_tasks, None,
                 groups=tuple(tuple(g) for g in rows[r]), priority=1)
        for r in sorted(rows)
    ]  # fmt: skip
    specs.extend(tallies)
    groups = (tuple(s.key for s in tallies),)
    specs.append(TaskSpec(f"finalize-{tag}", "finalize", finalize_slide, None, groups=groups))
    return specs
