"""The slide graph as data (no cluster): stages, dependencies and where each task may run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs
from nucscale.pipeline._graph import TaskSpec, slide_graph
from nucscale.pipeline._plan import SlidePlan, make_plan, settings_key


def _plan(slide: Path, out: Path, settings: Settings) -> SlidePlan:
    inp = resolve_inputs([str(slide)])[0][0]
    return make_plan(inp, settings, str(out), settings_key(inp, settings))


@pytest.fixture(scope="module")
def crop(cmu1_crop_tiff: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tissue on the left, glass on the right: some tiles hold no patch to compute."""
    return cmu1_crop_tiff(tmp_path_factory.mktemp("graph") / "crop.tif", 0, 1400, 1600, 900)


def _check_order(specs: list[TaskSpec]) -> dict[str, TaskSpec]:
    seen: dict[str, TaskSpec] = {}
    for s in specs:
        assert s.key not in seen, s.key
        for dep in (*s.deps, *(k for g in s.groups for k in g)):
            assert dep in seen, (s.key, dep)  # dependencies come first
        seen[s.key] = s
    return seen


def test_a_network_runs_once_per_patch_and_alone_on_the_gpu(crop: Path, tmp_path: Path) -> None:
    plan = _plan(crop, tmp_path, Settings(tile=256))  # the default U-Net
    specs = slide_graph(plan)
    by_key = _check_order(specs)
    stages = {s.stage for s in specs}
    assert stages == {"ingest", "forward", "instances", "paint", "tally", "finalize"}
    forward = [s for s in specs if s.stage == "forward"]
    assert all(s.gpu for s in forward) and not any(s.gpu for s in specs if s.stage != "forward")
    # each patch of the slide is computed by exactly one forward task
    patches = [p for s in forward if s.tile for p in plan.forward_patches(*s.tile)]
    assert len(patches) == len(set(patches))
    grid, (out, _, grow) = plan.grid, plan.patch
    assert out > grid.tile  # 512 px patches over 256 px tiles: a window reads 3 tiles away
    every = {(r, c) for r in range(grid.n_rows) for c in range(grid.n_cols)}
    assert {s.tile for s in forward} < every  # glass tiles far from tissue compute nothing
    computed_by = {p: s.key for s in forward if s.tile for p in plan.forward_patches(*s.tile)}
    assert plan.tissue is not None
    store_w, store_h = -(-grid.width // out) * out, -(-grid.height // out) * out
    for s in specs:
        if s.stage == "instances":
            assert s.tile is not None
            assert all(by_key[d].stage in ("forward", "ingest") for d in s.deps)
            win = grid.window(*s.tile)
            # every patch overlapping the window inside the maps store: computed (by a task it
            # waits for) when near tissue, else never computed by anyone
            for y in range(max(0, win.y0) // out * out, min(win.y1, store_h), out):
                for x in range(max(0, win.x0) // out * out, min(win.x1, store_w), out):
                    if plan.tissue.touches(x, y, x + out, y + out, grow):
                        assert computed_by[(y, x)] in s.deps, (s.key, y, x)
                    else:
                        assert (y, x) not in computed_by
    _check_tallies(specs)


def _check_tallies(specs: list[TaskSpec]) -> None:
    """Finalize waits for one tally per tile row; each task of the graph is tallied exactly
    once, by its own row's tally, and tallies jump the queue."""
    final, tallies = specs[-1], [s for s in specs if s.stage == "tally"]
    assert final.stage == "finalize" and final.tile is None
    assert final.groups == (tuple(s.key for s in tallies),)
    tiles = [s for s in specs if s.tile is not None]
    counted = [k for s in tallies for g in s.groups for k in g]
    assert sorted(counted) == sorted(s.key for s in tiles)
    row_of = {s.key: s.tile[0] for s in tiles if s.tile is not None}
    for s in tallies:
        assert s.priority > 0 and not s.deps
        assert {row_of[k] for g in s.groups for k in g} == {int(s.key.rsplit("-", 1)[1])}
    # the groups are in tally_tasks' argument order: ingest, segment, paint, forward
    stage_of = {s.key: s.stage for s in tiles}
    order = ({"ingest"}, {"instances", "segment"}, {"paint"}, {"forward"})
    for s in tallies:
        for g, want in zip(s.groups, order, strict=True):
            assert {stage_of[k] for k in g} <= want, (s.key, want)


def test_a_classical_segmenter_has_one_stage(crop: Path, tmp_path: Path) -> None:
    plan = _plan(crop, tmp_path, Settings(segmenter="baseline", tile=256))
    specs = slide_graph(plan)
    _check_order(specs)
    assert {s.stage for s in specs} == {"ingest", "segment", "paint", "tally", "finalize"}
    assert not any(s.gpu for s in specs)
    assert {s.tile for s in specs if s.stage == "segment"} == set(plan.tiles)
    _check_tallies(specs)
