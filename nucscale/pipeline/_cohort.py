"""Submitting a cohort to a Dask cluster and collecting one manifest row per slide.

All slides go to the cluster together: first each slide's plan task (it opens the slide on a
worker), then, as each plan arrives, that slide's tile graph (:func:`slide_graph`, built as plain
data by :mod:`nucscale.pipeline._graph`). A failing task fails only
its slide; the error (one line naming the file) goes into the manifest and the rest continue.

Retries: a task that raises is retried (:data:`RETRIES`), except for input errors, which every
task returns as a value (:mod:`nucscale.pipeline._guard`): a bad slide is attempted once, and
its slide is closed as soon as any of its tasks reports one.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from nucscale.cluster import cpu_workers, gpu_workers
from nucscale.cluster._warm import WarmImports
from nucscale.config import Settings
from nucscale.contracts import WORKER_MODULES
from nucscale.errors import NucscaleError
from nucscale.pipeline._graph import slide_graph
from nucscale.pipeline._guard import Guarded, refused
from nucscale.pipeline._inputs import RejectedInput, SlideInput
from nucscale.pipeline._plan import SlidePlan, make_plan, settings_key
from nucscale.pipeline._tasks import SEGMENT_STAGES, SlideResult, finished_with
from nucscale.store import (
    ManifestRow,
    ManifestWriter,
    labels_path,
    nuclei_path,
    write_slides_table,
)
from nucscale.store._lock import out_lock

log = logging.getLogger(__name__)

#: Called with (tasks finished, tasks known) as the run progresses.
ProgressFn = Callable[[int, int], None]
#: Called once, before any slide is submitted, with the ids of the slides skipped as done.
SkipFn = Callable[[list[str]], None]

#: Retries of a task that raised (not an input error; a lost worker is rescheduled anyway).
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
    tasks: dict[Any, Future] = field(default_factory=dict)  # by key; tiles: until done


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _submit_slide(
    client: Client,
    plan: SlidePlan,
    plan_f: Future,
    gpu: bool = False,
    cpu_only: list[str] | None = None,
) -> tuple[list[Future], Future]:
    """Submit the slide's graph (:func:`slide_graph`); returns (all futures, finalize's).

    Tasks receive the plan as its future (``plan_f``), so the plan travels to each worker once
    instead of being pickled into every task. With ``gpu``, tasks that need a GPU carry the
    ``GPU`` resource, so only GPU workers run the network; every other task is restricted to
    the workers without a GPU (``cpu_only``, the ones present when the slide is submitted), so
    the device never waits behind post-processing. The restriction is strict: Dask's work
    stealing ignores a loose one and moved post-processing onto the GPU worker in tests.
    """
    futures: dict[str, Future] = {}
    for spec in slide_graph(plan):
        extra: dict[str, Any] = {}
        if gpu and spec.gpu:
            extra["resources"] = {"GPU": 1}
        elif gpu and cpu_only:
            extra.update(workers=cpu_only, allow_other_workers=False)
        if spec.tile is None:  # tally, finalize: lists of results
            args: list[Any] = [[futures[k] for k in group] for group in spec.groups]
        else:
            args = [*spec.tile, *(futures[k] for k in spec.deps)]
        futures[spec.key] = client.submit(
            Guarded(spec.fn), plan_f, *args, key=spec.key, retries=RETRIES,
            priority=spec.priority, **extra,
        )  # fmt: skip
    return list(futures.values()), futures[spec.key]


def _is_done(row: ManifestRow, key: str, out: Path) -> bool:
    return (
        row.status == "done"
        and row.settings_key == key
        and finished_with(nuclei_path(out, row.slide_id), labels_path(out, row.slide_id), key)
    )


def max_active_slides(client: Client) -> int:
    """Slides whose graphs may be on the cluster at once: enough to keep every worker busy
    across slide boundaries, few enough that a 10,000-slide cohort does not put millions of
    tasks on the scheduler."""
    workers = len(client.scheduler_info().get("workers", {}))
    return max(4, 2 * workers)


def run_cohort(
    client: Client,
    slides: list[SlideInput],
    rejected: list[RejectedInput],
    settings: Settings,
    out: Path,
    progress: ProgressFn | None = None,
    command: str | None = None,
    on_skip: SkipFn | None = None,
) -> list[ManifestRow]:
    """Process ``slides`` on ``client``'s cluster; write and return their manifest rows.

    Slides already done with the same settings (manifest row, and outputs whose metadata
    carries the same settings key) are skipped. At most :func:`max_active_slides` slides are
    on the cluster at once; the next is planned when one finishes. At the end the cohort table
    ``OUT/slides.parquet`` is rewritten from the whole manifest. The run holds ``OUT``'s lock
    (:func:`nucscale.store._lock.out_lock`): a second run on the same folder fails at once.
    ``command`` (default: this process's command line) is recorded in each slide's
    provenance. ``on_skip`` hears which slides were skipped (when any were).
    """
    command = shlex.join(sys.argv) if command is None else command
    out = Path(out)
    with out_lock(out):
        return _run_locked(client, slides, rejected, settings, out, progress, command, on_skip)


def _run_locked(
    client: Client,
    slides: list[SlideInput],
    rejected: list[RejectedInput],
    settings: Settings,
    out: Path,
    progress: ProgressFn | None,
    command: str,
    on_skip: SkipFn | None,
) -> list[ManifestRow]:
    """:func:`run_cohort` while holding the output folder's run lock."""
    manifest = ManifestWriter(out)
    loop = _CohortLoop(client, settings, out, command, manifest, progress)
    try:
        loop.admit(slides, rejected, on_skip)
        rows = loop.run()
    finally:  # rows of slides that finished reach the file even when the run is interrupted
        manifest.flush()
    write_slides_table(out, manifest.rows.values())
    return rows


class Role(Enum):
    """What a future is to the cohort loop."""

    PLAN = "plan"  # the slide's plan task: when it arrives, the slide's graph is submitted
    TILE = "tile"  # a task of the graph: only an input error it reports closes the slide
    FINAL = "final"  # the graph's finalize task: its result is the slide's done row


class _CohortLoop:
    """At most :func:`max_active_slides` slides on the cluster; each finished future moves its
    slide on (plan -> graph -> row) or closes it (an input error from any of its tasks, or a
    failed plan or finalize); a closed slide's row goes to the manifest and the next slide
    starts."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        out: Path,
        command: str,
        manifest: ManifestWriter,
        progress: ProgressFn | None,
    ) -> None:
        self.client, self.settings, self.out, self.command = client, settings, out, command
        self.manifest, self.progress = manifest, progress
        self.rows: list[ManifestRow] = []
        self.queue: list[_Slide] = []  # in input order
        self.active: dict[str, _Slide] = {}
        self.roles: dict[Any, tuple[Role, str]] = {}  # future key -> (role, slide id)
        self.pending = as_completed()
        self.limit = max_active_slides(client)
        self.gpu = gpu_workers(client) > 0
        self.finished = self.known = 0

    def admit(
        self, slides: list[SlideInput], rejected: list[RejectedInput], on_skip: SkipFn | None
    ) -> None:
        """Record the rejected inputs as failed, keep the rows of slides already done with
        these settings (and tell ``on_skip``), queue the rest."""
        previous = dict(self.manifest.rows)
        self.record([
            ManifestRow(slide_id=r.slide_id, path=r.path, status="failed", error=r.reason)
            for r in rejected
        ])  # fmt: skip
        skipped: list[str] = []
        for inp in slides:
            key = settings_key(inp, self.settings)
            old = previous.get((inp.slide_id, inp.path))
            if old is not None and _is_done(old, key, self.out):
                log.info("%s: already done with these settings; skipped", inp.slide_id)
                self.rows.append(old)
                skipped.append(inp.slide_id)
            else:
                self.queue.append(_Slide(inp, key, 0.0, ""))
        if on_skip is not None and skipped:
            on_skip(skipped)

    def record(self, rows: list[ManifestRow]) -> None:
        self.rows.extend(rows)
        self.manifest.add(rows)

    def _warm_workers(self) -> None:
        """Have every worker import the tasks' libraries (:class:`WarmImports`). A worker that
        leaves while it loads (a cancelled job, a lost pod) breaks the scheduler's broadcast
        and the call fails; the run goes on: the scheduler kept the plugin for workers that
        join, and a worker without it loads the libraries in its first task."""
        try:
            self.client.register_plugin(WarmImports(WORKER_MODULES))
        except OSError as exc:  # distributed's CommClosedError is one
            log.debug("not every worker loaded the tasks' libraries in advance: %s", exc)

    def run(self) -> list[ManifestRow]:
        if self.queue:  # slides to plan: every worker loads the tasks' libraries first, at once
            self._warm_workers()
        self.queue.reverse()  # pop() from the end keeps input order
        self._start_next()
        self._report()
        for fut in self.pending:
            self.finished += 1
            self._on_done(fut)
            self._report()
        return self.rows

    def _report(self) -> None:
        if self.progress:
            self.progress(self.finished, self.known + len(self.queue))

    def _watch(self, fut: Future, role: Role, sid: str) -> None:
        self.roles[fut.key] = (role, sid)
        self.pending.add(fut)

    def _start_next(self) -> None:
        while self.queue and len(self.active) < self.limit:
            s = self.queue.pop()
            s.started, s.started_at = time.perf_counter(), _now()
            self.active[s.inp.slide_id] = s
            info = {"command": self.command, "started": s.started_at}
            fut = self.client.submit(
                Guarded(make_plan), s.inp, self.settings, str(self.out), s.key, info,
                key=f"plan-{s.inp.slide_id}-{s.key}", retries=RETRIES,
            )  # fmt: skip
            s.tasks[fut.key] = fut
            self._watch(fut, Role.PLAN, s.inp.slide_id)
            self.known += 1

    def _close(self, s: _Slide, row: ManifestRow) -> None:
        self.record([row])
        for t in s.tasks.values():
            self.roles.pop(t.key, None)
            t.release()
        del self.active[s.inp.slide_id]
        self._start_next()

    def _on_done(self, fut: Future) -> None:
        role, sid = self.roles.get(fut.key, (Role.TILE, ""))
        s = self.active.get(sid)
        if s is None:
            return  # a task of a slide closed already
        bad = refused(fut)
        if bad is not None:  # an input error, from any task of the slide
            self._close(s, _failed(s, bad.error))
        elif role is Role.TILE:  # a tile that raised fails its slide through the final task
            if fut.status == "finished":  # its dependents hold it as long as they need it
                self.roles.pop(fut.key, None)
                s.tasks.pop(fut.key).release()
        elif fut.status != "finished":
            self._close(s, _failed(s, _exception(fut)))
        elif role is Role.PLAN:
            s.plan = fut.result()
            cpu_only = cpu_workers(self.client) if self.gpu else []  # the workers present now
            tasks, final = _submit_slide(self.client, s.plan, fut, self.gpu, cpu_only)
            s.tasks.update((t.key, t) for t in tasks)
            for t in tasks:
                self._watch(t, Role.FINAL if t is final else Role.TILE, sid)
            self.known += len(tasks)
        else:
            self._close(s, _done(s, fut.result()))


def _exception(fut: Future) -> BaseException:
    """The error of a failed future, or a CancelledError-like stand-in for a cancelled one."""
    if fut.status == "error":
        exc = fut.exception()
        if exc is not None:
            return exc
    return RuntimeError(f"task {fut.key} was {fut.status} (scheduler or worker lost?)")


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
        qc_flags="; ".join(result.qc_flags) or None,
        nuclei=result.nuclei,
        settings_key=s.key,
        started=s.started_at,
        finished=_now(),
        wall_s=time.perf_counter() - s.started,
        ingest_s=result.ingest_s,
        segment_s=result.segment_s,
        write_s=result.write_s,
        paint_s=result.paint_s,
        **_stage_fields(result),
        tiles_reused=result.tiles_reused,
        **_plan_fields(s.plan),
    )


def _stage_fields(result: SlideResult) -> dict[str, Any]:
    return dict(zip(SEGMENT_STAGES, result.stages, strict=True))


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
