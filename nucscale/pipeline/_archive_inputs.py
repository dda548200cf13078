"""Archives as inputs of ``nucscale run``: an index (``INDEX.parquet``) or a folder of DICOM
files that is not one whole-slide series. Each WSI series becomes one slide, each full
mammogram one mammogram for the mass model, and everything else is skipped with its reason.

A folder whose DICOM files are a single WSI series (and nothing else DICOM) stays a slide, as
before; any other folder of DICOM files is an archive, indexed in memory (headers, and the
pixels a CBIS-DDSM role needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nucscale.io._options import DEFAULT, ReadOptions
from nucscale.pipeline._inputs import SlideInput
from nucscale.pipeline._mammograms import MammogramInput
from nucscale.store._mammograms import mammogram_id


@dataclass(frozen=True)
class Filters:
    """``--modality``, ``--series``, ``--patient``: which instances of an archive to take."""

    modality: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    patient: tuple[str, ...] = ()

    def apply(self, index: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=index.index)
        for column, wanted in (("modality", self.modality), ("series_uid", self.series),
                               ("patient_id", self.patient)):  # fmt: skip
            if wanted:
                keep &= index[column].isin(wanted)
        return index[keep]


@dataclass
class Expanded:
    """What the archives among the inputs hold, ready for the two pipelines."""

    slides: list[SlideInput] = field(default_factory=list)
    mammograms: list[MammogramInput] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    archives: list[str] = field(default_factory=list)


def split_archives(
    inputs: list[str],
    filters: Filters = Filters(),
    mpp: float | None = None,
    options: ReadOptions = DEFAULT,
) -> tuple[list[str], Expanded]:
    """The inputs that are not archives (unchanged), and what the archives expand to."""
    from nucscale.archive import read_index

    plain: list[str] = []
    expanded = Expanded()
    for item in inputs:
        p = Path(item)
        if p.suffix.lower() == ".parquet" and p.is_file():
            index = read_index(p)
        elif p.is_dir() and not _is_zarr(p):
            index = _index_if_archive(p)
            if index is None:
                plain.append(item)
                continue
        else:
            plain.append(item)
            continue
        expanded.archives.append(os.path.abspath(p))
        _expand(filters.apply(index), expanded, mpp, options)
    return plain, expanded


def _is_zarr(path: Path) -> bool:
    return any((path / n).exists() for n in ("zarr.json", ".zattrs", ".zgroup"))


def _index_if_archive(folder: Path) -> pd.DataFrame | None:
    """The folder's index when it is an archive; None when it is one WSI series (or holds no
    DICOM file: the slide readers then say what it is)."""
    from nucscale.archive import assign
    from nucscale.archive._schema import HEADER_COLUMNS
    from nucscale.archive._walk import index_rows, list_files

    rows, _ = index_rows(list_files([folder]))
    table = pd.DataFrame(rows, columns=list(HEADER_COLUMNS))
    dicom = table[table["status"] != "skipped"]
    if dicom.empty:
        return None
    if (dicom["kind"] == "wsi").all() and len(_slide_series(dicom)) == 1:
        return None  # one slide, perhaps with its label and overview in series of their own
    return assign(table)


def _slide_series(wsi: pd.DataFrame) -> list[str]:
    """WSI series that hold a VOLUME instance (a series of only LABEL, OVERVIEW or THUMBNAIL
    images is not a slide)."""
    volume = wsi["image_type"].fillna("").str.split("\\").map(lambda t: "VOLUME" in t)
    return sorted(wsi.loc[volume, "series_uid"].unique())


def _expand(index: pd.DataFrame, into: Expanded, mpp: float | None, options: ReadOptions) -> None:
    ok = index[index["status"] == "ok"]
    for _, row in index[index["status"] != "ok"].iterrows():
        into.skipped.append((row["path"], f"{row['status']}: {row['reason']}"))
    wsi = ok[ok["kind"] == "wsi"]
    slides = _slide_series(wsi)
    for _, row in wsi[~wsi["series_uid"].isin(slides)].iterrows():
        into.skipped.append((row["path"], f"WSI {row['image_type']} image of a series without "
                             "a VOLUME image: not a slide"))  # fmt: skip
    for series_uid, series in wsi[wsi["series_uid"].isin(slides)].groupby("series_uid"):
        # the reader gathers the series from the files beside this one
        first = series.sort_values("path").iloc[0]["path"]
        into.slides.append(
            SlideInput(os.path.abspath(first), f"wsi-{series_uid}", None, mpp, options)
        )
    fulls = ok[(ok["kind"] == "mammogram") & (ok["role"] == "full")]
    for _, row in fulls.iterrows():
        label = row.get("label_path")
        into.mammograms.append(
            MammogramInput(
                os.path.abspath(row["path"]),
                mammogram_id(row["sop_instance_uid"]),
                row["sop_instance_uid"],
                label if isinstance(label, str) else None,
                mpp / 1000 if mpp else None,
            )
        )
    rest = ok[(ok["kind"] != "wsi") & ~ok.index.isin(fulls.index)]
    for _, row in rest.iterrows():
        into.skipped.append((row["path"], _why_skipped(row)))


def _why_skipped(row: pd.Series) -> str:
    role = row.get("role")
    if role == "crop":
        return f"CBIS-DDSM crop of {row['pairs_with']}: not segmented (its mammogram is)"
    if role == "mask":
        return f"CBIS-DDSM ROI mask of {row['pairs_with']}: the truth of its mammogram"
    what = f"{row['modality'] or 'no modality'} {row['sop_class'] or row['sop_class_uid']}"
    if row["kind"] == "mammogram":
        return f"{what}: a mammogram whose role is unclear ({row['reason']})"
    return f"{what}: neither a whole-slide image nor a mammogram"
