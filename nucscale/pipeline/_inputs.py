"""Turning command-line inputs (files, folders, globs, CSV manifests) into slides to process."""

from __future__ import annotations

import csv
import glob
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from nucscale.errors import InputError
from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.store import check_slide_id, clean_slide_id

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SlideInput:
    """One slide to process: where it is, what to call it, and pixel sizes to apply.

    Attributes
    ----------
    mpp:
        Pixel size that *overrides* the file's (a CSV manifest's ``mpp`` column: the user states
        it for this slide).
    default_mpp:
        Pixel size used only when the file records none (the command line's ``--mpp``, which
        applies to a whole cohort and must not rescale slides that know their own).
    options:
        How to read the slide's samples (``--channel``, ``--intensity-range``, ``--z``; a CSV
        ``channel`` column overrides ``--channel`` for its row).
    """

    path: str
    slide_id: str
    mpp: float | None = None
    default_mpp: float | None = None
    options: ReadOptions = DEFAULT


@dataclass(frozen=True)
class RejectedInput:
    """An input refused before any processing, with the reason."""

    path: str
    slide_id: str
    reason: str


def default_slide_id(path: Path) -> str:
    """File stem (folder name for a DICOM folder, without ``.ome.zarr`` / ``.zarr`` for an
    OME-Zarr one), made a valid id by :func:`nucscale.store.clean_slide_id` (characters a slide
    id may not hold become '_')."""
    name = path.name if path.is_dir() else path.stem
    for suffix in (".ome.zarr", ".zarr"):
        if path.is_dir() and name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return clean_slide_id(name)


def _abs(path: Path) -> str:
    """Absolute, normalised path text: one spelling per file, so resume finds its rows."""
    return os.path.abspath(path)


def _from_csv(
    manifest: Path, default_mpp: float | None, options: ReadOptions
) -> list[SlideInput | RejectedInput]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(manifest, f"cannot read CSV manifest: {exc}") from exc
    if not rows or "path" not in rows[0]:
        raise InputError(manifest, "CSV manifest needs a header with a 'path' column")
    out: list[SlideInput | RejectedInput] = []
    for i, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise InputError(manifest, f"line {i}: empty path")
        path = Path(raw) if Path(raw).is_absolute() else manifest.parent / raw
        sid = (row.get("slide_id") or "").strip() or default_slide_id(path)
        try:
            sid = check_slide_id(sid, f"{manifest} line {i}")
        except InputError as exc:  # the failed row is filed under an id that is allowed
            out.append(RejectedInput(_abs(path), default_slide_id(path), str(exc)))
            continue
        mpp_raw = (row.get("mpp") or "").strip()
        try:
            mpp = float(mpp_raw) if mpp_raw else None
            if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
                raise ValueError(mpp_raw)
        except ValueError:
            reason = f"{manifest} line {i}: mpp {mpp_raw!r} is not a positive number"
            out.append(RejectedInput(_abs(path), sid, reason))
            continue
        channel = (row.get("channel") or "").strip()
        row_options = replace(options, channel=channel) if channel else options
        out.append(SlideInput(_abs(path), sid, mpp, default_mpp, row_options))
    return out


def resolve_inputs(
    inputs: list[str], mpp: float | None = None, options: ReadOptions = DEFAULT
) -> tuple[list[SlideInput], list[RejectedInput]]:
    """Expand files, DICOM folders, glob patterns and ``.csv`` manifests into slides.

    ``mpp`` is the fallback pixel size for files that record none; a CSV ``mpp`` column
    overrides the file's value for its row. ``options`` are the read choices of every slide; a
    CSV ``channel`` column overrides the channel for its row. Paths come back absolute.

    A path that does not exist is kept (it fails later with a clear reason in the manifest); a
    glob that matches nothing is an :class:`InputError`. Duplicate slide ids: the first wins and
    later ones are rejected, naming the path that holds the id.
    """
    found: list[SlideInput | RejectedInput] = []
    for item in inputs:
        p = Path(item)
        if p.suffix.lower() == ".csv" and p.is_file():
            found.extend(_from_csv(p, mpp, options))
        elif not p.exists() and _GLOB_CHARS.search(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(item, "glob pattern matches no file")
            found.extend(
                SlideInput(_abs(Path(m)), default_slide_id(Path(m)), None, mpp, options)
                for m in matches
            )
        else:
            found.append(SlideInput(_abs(p), default_slide_id(p), None, mpp, options))
    accepted: list[SlideInput] = []
    rejected: list[RejectedInput] = []
    owner: dict[str, str] = {}
    for s in found:
        if isinstance(s, RejectedInput):
            rejected.append(s)
        elif s.slide_id in owner:
            rejected.append(
                RejectedInput(
                    s.path,
                    s.slide_id,
                    f"{s.path}: duplicate slide id {s.slide_id!r} (already used by "
                    f"{owner[s.slide_id]}); give distinct ids in a CSV manifest's slide_id column",
                )
            )
        else:
            owner[s.slide_id] = s.path
            accepted.append(s)
    return accepted, rejected
