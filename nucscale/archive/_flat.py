"""The descriptive flat tree the CBIS-DDSM method works from, as symbolic links:
``Mass/Test/Mass-Test_P_00038_LEFT_CC_FULL.dcm``, ``..._CROP_1.dcm``, ``..._MASK_1.dcm``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nucscale.archive._cbis import ABNORMALITY_NAME, SPLIT_NAME
from nucscale.errors import OutputError


@dataclass(frozen=True)
class FlatCounts:
    """Files with a role in the index, and links in the flat tree after writing it."""

    files: int
    links: int


def flat_name(row: pd.Series) -> Path:
    """``<Type>/<Split>/<Type>-<Split>_<patient>_<side>_<view>_<ROLE>[_<k>].dcm`` of a row."""
    kind = ABNORMALITY_NAME[row["abnormality"]]
    split = SPLIT_NAME[row["split"]]
    stem = f"{kind}-{split}_{row['case_patient']}_{row['side']}_{row['view']}_{row['role'].upper()}"
    if row["role"] != "full":
        stem += f"_{int(row['abnormality_number'])}"
    return Path(kind) / split / f"{stem}.dcm"


def write_flat(index: pd.DataFrame, out: Path) -> FlatCounts:
    """Link every file with a CBIS-DDSM role under ``out`` by its descriptive name.

    Links already there that point to the same file are kept; a name two files would share is
    an :class:`~nucscale.errors.OutputError` (before anything is linked)."""
    rows = index[index["role"].notna() & index["case_patient"].notna()]
    targets: dict[Path, str] = {}
    for _, row in rows.iterrows():
        name = flat_name(row)
        if name in targets:
            raise OutputError(
                out / name, f"two files would share this name: {targets[name]} and {row['path']}"
            )
        targets[name] = os.path.abspath(row["path"])
    for name, target in targets.items():
        link = out / name
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                if link.is_symlink() and os.readlink(link) == target:
                    continue
                link.unlink()
            os.symlink(target, link)
        except OSError as exc:
            raise OutputError(link, f"cannot link: {exc.strerror or exc}") from exc
    links = sum(1 for p in out.rglob("*.dcm") if p.is_symlink())
    return FlatCounts(files=len(rows), links=links)
