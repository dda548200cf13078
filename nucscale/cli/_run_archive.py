"""The archive side of ``nucscale run``: filters, WSI series and mammograms from archives,
the mass model's weights, and what is printed for them. (The pipeline is imported when used.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from nucscale.cli._app import console

if TYPE_CHECKING:
    from distributed import Client

    from nucscale.io._options import ReadOptions
    from nucscale.pipeline._archive_inputs import Expanded
    from nucscale.pipeline._inputs import SlideInput
    from nucscale.pipeline._mammograms import MammogramInput

#: Skipped archive objects named one per line at most (``nucscale index`` lists all).
_MAX_SKIPPED = 20

ModalityOption = Annotated[
    list[str] | None,
    typer.Option("--modality", help="Archives: only instances of this modality (repeatable)."),
]
SeriesOption = Annotated[
    list[str] | None,
    typer.Option("--series", help="Archives: only this SeriesInstanceUID (repeatable)."),
]
PatientOption = Annotated[
    list[str] | None,
    typer.Option("--patient", help="Archives: only this PatientID (repeatable)."),
]


@dataclass
class ArchiveRun:
    """The archives among the inputs: their slides, mammograms and skipped objects."""

    slides: list[SlideInput] = field(default_factory=list)
    mammograms: list[MammogramInput] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, expanded: Expanded) -> ArchiveRun:
        return cls(expanded.slides, expanded.mammograms, expanded.skipped)

    def skip_mammograms(self) -> None:
        """No mass model was given: each mammogram is skipped, saying what to pass (listed
        first: the objects a user most likely meant to process)."""
        why = "mammogram: no mass model given (pass --weights W.pt from nucscale train INDEX)"
        self.skipped = [(m.path, why) for m in self.mammograms] + self.skipped
        self.mammograms = []

    def run_mammograms(self, client: Client, weights: str | None, out: Path) -> list[dict]:
        if not self.mammograms or weights is None:
            return []
        from nucscale.pipeline._mammograms import run_mammograms

        return run_mammograms(client, self.mammograms, weights, out)


def mammogram_weights(weights: Path | None) -> tuple[str | None, Path | None]:
    """(mass model, nucleus model weights): ``--weights`` goes to the mammograms when it is
    a mass model (``nucscale train INDEX.parquet``), else to the nucleus segmenter."""
    if weights is None:
        return None, None
    from nucscale.models.mammo import is_mammogram_weights

    if is_mammogram_weights(weights):
        return str(weights.resolve()), None
    return None, weights


def split_inputs(
    inputs: list[str],
    modality: list[str] | None,
    series: list[str] | None,
    patient: list[str] | None,
    mpp: float | None,
    options: ReadOptions,
) -> tuple[list[str], ArchiveRun]:
    """Inputs that are not archives, and what the archives hold (filters applied)."""
    from nucscale.pipeline._archive_inputs import Filters, split_archives

    filters = Filters(tuple(modality or ()), tuple(series or ()), tuple(patient or ()))
    plain, expanded = split_archives(inputs, filters, mpp, options)
    return plain, ArchiveRun.of(expanded)


def announce_skipped(archive: ArchiveRun) -> None:
    """One line per skipped archive object (at most :data:`_MAX_SKIPPED`)."""
    for path, reason in archive.skipped[:_MAX_SKIPPED]:
        console.print(Text(f"skipped: {path}: {reason}"), soft_wrap=True, highlight=False)
    more = len(archive.skipped) - _MAX_SKIPPED
    if more > 0:
        console.print(f"... and {more} more skipped (nucscale index lists every file)")


def show_mammograms(rows: list[dict[str, Any]]) -> int:
    """The mammograms' table and summary line; returns how many failed."""
    if not rows:
        return 0
    table = Table("mammogram", "file", "status", "regions", "mass mm²")
    table.columns[0].overflow = "fold"
    failed = 0
    for r in sorted(rows, key=lambda r: r["mammogram_id"]):
        ok = r["status"] in ("done", "done earlier")
        failed += not ok
        area = r.get("mass_area_mm2")
        table.add_row(
            r["mammogram_id"],
            Path(r["path"]).name,
            Text(r["status"], style="green") if ok else Text("failed", style="red"),
            "" if r.get("regions") is None else str(r["regions"]),
            "" if area is None else f"{area:.1f}",
        )
    console.print(table)
    for r in rows:
        if r["status"] not in ("done", "done earlier"):
            console.print(Text(f"  {r['mammogram_id']}: {r['error']}", style="red"),
                          soft_wrap=True)  # fmt: skip
    console.print(f"{len(rows) - failed} mammograms done, {failed} failed", soft_wrap=True)
    return failed
