"""Submitting a cohort to a Dask cluster and collecting one manifest row per slide.

All slides go to the cluster together: first each slide's plan task (it opens the slide on a
worker), then, as each plan arrives, that slide's tile graph::

    ingest(r, c) ─▶ segment(r, c) [needs ingest of its neighbours] ─▶ paint(r, c) ─▶ finalize

Task keys are ``<stage>-<slide_id>-<settings key>-<row>-<col>``: deterministic, so a task that
is resubmitted while still known to the scheduler is not run twice. A failing task fails only
its slide; the error (one line naming the file) goes into the manifest and the rest continue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from nucscale.config import Settings
from nucscale.errors import NucscaleError
from nucscale.pipeline._inputs import RejectedInput, SlideInput
from nucscale.pipeline._plan import SlidePlan, make_plan, settings_key
from nucscale.pipeline._tasks import (
    SlideResult,
    finalize_slide,
    ingest_tile,
    paint_chunk,
    segment_tile,
)
from nucscale.store import ManifestRow, nuclei_path, read_manifest, write_manifest

log = logging.getLogger(__name__)

#: Called with (tasks finished, tasks known) as the run progresses.
ProgressFn = Callable[[int, int], None]

RETRIES = 2


def error_message(exc: BaseException, path: str) -> str:
    """One line for the manifest: nucscale errors already name the file; others get it added."""
    if isinstance(exc, NucscaleError) and path in str(exc):
        return str(exc).splitlines()[0]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{path}: {type(exc).__name__}: {text}".rstrip(": ")


@dataclass
class _Slide:
    inp: SlideInput
    key: str
    started: float
    started_at: str
    plan: SlidePlan | None = None
    tasks: list[Future] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _submit_slide(client: Client, plan: SlidePlan) -> tuple[list[Future], Future]:
    """Submit the tile graph of one planned slide; returns (all futures, the finalize future)."""
    tag = f"{plan.slide_id}-{plan.key}"
    grid = plan.grid
    tissue = set(plan.tiles)
    ingest: dict[tuple[int, int], Future] = {
        t: client.submit(ingest_tile, plan, *t, key=f"ingest-{tag}-{t[0]}-{t[1]}", retries=RETRIES)
        for t in plan.tiles
    }
    segment: dict[tuple[int, int], Future] = {}
    for t in plan.tiles:
        deps = [ingest[n] for n in grid.neighbours(*t, grid.reach) if n in tissue]
        segment[t] = client.submit(
            segment_tile, plan, *t, *deps, key=f"segment-{tag}-{t[0]}-{t[1]}", retries=RETRIES
        )
    paint: list[Future] = []
    for t in plan.paint_tiles():
        deps = [segment[n] for n in grid.neighbours(*t, grid.reach) if n in tissue]
        paint.append(
            client.submit(
                paint_chunk, plan, *t, *deps, key=f"paint-{tag}-{t[0]}-{t[1]}", retries=RETRIES
            )
        )
    final = client.submit(
        finalize_slide,
        plan,
        list(ingest.values()),
        list(segment.values()),
        paint,
        key=f"finalize-{tag}",
        retries=RETRIES,
    )
    return [*ingest.values(), *segment.values(), *paint, final], final


def _is_done(row: ManifestRow, key: str, out: Path) -> bool:
    return (
        row.status == "done"
        and row.settings_key == key
        and nuclei_path(out, row.slide_id).exists()
        and (out / "labels" / f"{row.slide_id}.zarr").exists()
    )


def run_cohort(
    client: Client,
    slides: list[SlideInput],
    rejected: list[RejectedInput],
    settings: Settings,
    out: Path,
    progress: ProgressFn | None = None,
) -> list[ManifestRow]:
    """Process ``slides`` on ``client``'s cluster; write and return their manifest rows.

    Slides already done with the same settings (manifest row + outputs present) are skipped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out)
    rows: list[ManifestRow] = [
        ManifestRow(slide_id=r.slide_id, path=r.path, status="failed", error=r.reason)
        for r in rejected
    ]
    if rows:
        write_manifest(out, rows)
    state: dict[str, _Slide] = {}
    kinds: dict[Any, tuple[str, str]] = {}  # future key -> (kind, slide id)
    pending = as_completed()
    for inp in slides:
        key = settings_key(inp, settings)
        old = previous.get((inp.slide_id, inp.path))
        if old is not None and _is_done(old, key, out):
            log.info("%s: already done with these settings; skipped", inp.slide_id)
            rows.append(old)
            continue
        state[inp.slide_id] = _Slide(inp, key, time.perf_counter(), _now())
        fut = client.submit(
            make_plan,
            inp,
            settings,
            str(out),
            key,
            key=f"plan-{inp.slide_id}-{key}",
            retries=RETRIES,
        )
        kinds[fut.key] = ("plan", inp.slide_id)
        pending.add(fut)
    done_tasks, known = 0, len(kinds)
    if progress:
        progress(done_tasks, known)
    for fut in pending:
        kind, sid = kinds.get(fut.key, ("tile", ""))
        done_tasks += 1
        if kind == "plan":
            s = state[sid]
            if fut.status == "error":
                rows.append(_failed(s, fut.exception()))
                write_manifest(out, rows[-1:])
            else:
                s.plan = fut.result()
                s.tasks, final = _submit_slide(client, s.plan)
                kinds[final.key] = ("final", sid)
                for t in s.tasks:
                    pending.add(t)
                known += len(s.tasks)
        elif kind == "final":
            s = state[sid]
            if fut.status == "error":
                rows.append(_failed(s, fut.exception()))
            else:
                rows.append(_done(s, fut.result()))
            write_manifest(out, rows[-1:])
            for t in s.tasks:
                t.release()
        if progress:
            progress(done_tasks, known)
    return rows


def _failed(s: _Slide, exc: BaseException | None) -> ManifestRow:
    msg = error_message(exc, s.inp.path) if exc is not None else f"{s.inp.path}: failed"
    log.error("%s", msg)
    return ManifestRow(
        slide_id=s.inp.slide_id,
        path=s.inp.path,
        status="failed",
        error=msg,
        settings_key=s.key,
        started=s.started_at,
        finished=_now(),
        wall_s=time.perf_counter() - s.started,
        **_plan_fields(s.plan),
    )


def _done(s: _Slide, result: SlideResult) -> ManifestRow:
    return ManifestRow(
        slide_id=s.inp.slide_id,
        path=s.inp.path,
        status="done",
        nuclei=result.nuclei,
        settings_key=s.key,
        started=s.started_at,
        finished=_now(),
        wall_s=time.perf_counter() - s.started,
        ingest_s=result.ingest_s,
        segment_s=result.segment_s,
        write_s=result.write_s,
        **_plan_fields(s.plan),
    )


def _plan_fields(plan: SlidePlan | None) -> dict[str, Any]:
    if plan is None:
        return {}
    return {
        "tissue_mm2": plan.tissue_mm2,
        "tiles": len(plan.tiles),
        "mpp": plan.mpp0,
        "analysis_mpp": plan.choice.mpp,
        "backend": plan.backend,
        "segmenter": plan.segmenter,
        "plan_s": plan.plan_s,
    }
