"""CBIS-DDSM structure of an index: case fields from folder names, roles from pixels and header,
each crop and mask paired with its full mammogram, and the masks of a mammogram summed.

CBIS-DDSM stores a breast view's full mammogram in ``Mass-Test_P_00038_LEFT_CC/<uid>/<uid>/
1-1.dcm`` and, per abnormality *k*, a cropped image and a binary ROI mask in
``Mass-Test_P_00038_LEFT_CC_k/<uid>/<uid>/1-{1,2}.dcm``: which of the two files is the crop and
which the mask is not in its name, and the two share a series. So the folder names give the
case (abnormality type, split, patient, side, view, abnormality number; the PatientID holds the
same string where a folder is renamed), and the role comes from the pixels and the size:

- ``mask``: the pixel values take at most two distinct values (``binary``, read at indexing);
- ``full``: the largest non-binary image of its case (patient, side, view, type, split);
- ``crop``: a non-binary image of its case smaller than the full one in both dimensions.

A case with two equally large non-binary images, or a crop or mask without a full mammogram,
keeps ``role`` null and says why in ``reason``; a mask whose size differs from its mammogram's
is paired and noted (its label is resized to the mammogram, nearest neighbour).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CASE_RE = re.compile(
    r"^(?P<abnormality>Mass|Calc)-(?P<split>Training|Test)_(?P<patient>P_\d+)_"
    r"(?P<side>LEFT|RIGHT)_(?P<view>CC|MLO)(?:_(?P<number>\d+))?$"
)
_ABNORMALITY = {"Mass": "mass", "Calc": "calcification"}
_SPLIT = {"Training": "train", "Test": "test"}
#: The CBIS-DDSM spelling of the fields, for the flat layout's names.
ABNORMALITY_NAME = {v: k for k, v in _ABNORMALITY.items()}
SPLIT_NAME = {v: k for k, v in _SPLIT.items()}
_CASE_KEY = ["abnormality", "split", "case_patient", "side", "view"]


def parse_case(path: str, patient_id: str | None) -> dict[str, Any] | None:
    """The case fields of a file from the nearest folder named like a CBIS-DDSM case, else
    from its PatientID; None when neither is."""
    names = list(reversed(Path(path).parent.parts))
    for name in [*names, patient_id if isinstance(patient_id, str) else ""]:
        m = CASE_RE.match(name)
        if m:
            return {
                "abnormality": _ABNORMALITY[m["abnormality"]],
                "split": _SPLIT[m["split"]],
                "case_patient": m["patient"],
                "side": m["side"],
                "view": m["view"],
                "abnormality_number": int(m["number"]) if m["number"] else None,
            }
    return None


def assign(index: pd.DataFrame) -> pd.DataFrame:
    """The index with the CBIS-DDSM columns filled (a new frame; rows in the same order)."""
    df = index.copy()
    for column in ("abnormality", "split", "case_patient", "side", "view", "role", "pairs_with"):
        df[column] = pd.Series([None] * len(df), dtype=object, index=df.index)
    for column in ("abnormality_number", "n_masks"):
        df[column] = pd.Series([None] * len(df), dtype="Int64", index=df.index)
    if "label_path" not in df:
        df["label_path"] = pd.Series([None] * len(df), dtype=object, index=df.index)
    images = df[(df["status"] == "ok") & df["kind"].isin(["mammogram", "image"])]
    for i, row in images.iterrows():
        case = parse_case(row["path"], row["patient_id"])
        if case:
            for key, value in case.items():
                df.at[i, key] = value
    in_case = df["case_patient"].notna()
    for _, case in df[in_case].groupby(_CASE_KEY, sort=False):
        _assign_case(df, case)
    # a mammogram outside any CBIS-DDSM case is a full image of its own
    lone = (~in_case) & (df["status"] == "ok") & (df["kind"] == "mammogram")
    df.loc[lone & (df["binary"] != True), "role"] = "full"  # noqa: E712 - nullable column
    return df


def _assign_case(df: pd.DataFrame, case: pd.DataFrame) -> None:
    masks = case[case["binary"] == True]  # noqa: E712 - nullable column
    others = case[case["binary"] != True]  # noqa: E712
    df.loc[masks.index, "role"] = "mask"
    area = others["rows"] * others["columns"]
    full_index = None
    if len(others):
        largest = others[area == area.max()]
        mask_shapes = set(zip(masks["rows"], masks["columns"], strict=True))
        first = largest.iloc[0]
        if len(largest) > 1:
            why = f"{len(largest)} images of the same largest size in one case"
        elif mask_shapes and not _near((first["rows"], first["columns"]), mask_shapes):
            why = "no image of the size of its masks: the full mammogram is missing"
        else:
            why = ""
            full_index = largest.index[0]
            df.at[full_index, "role"] = "full"
            df.at[full_index, "abnormality_number"] = None
    else:
        why = "no full mammogram of this case in the archive"
    if full_index is None:
        for i in case.index:
            _note(df, i, why)
        df.loc[case.index, "role"] = None
        return
    full = df.loc[full_index]
    shape = (full["rows"], full["columns"])
    for i in others.index.drop(full_index):
        if df.at[i, "rows"] < shape[0] and df.at[i, "columns"] < shape[1]:
            df.at[i, "role"] = "crop"
            df.at[i, "pairs_with"] = full["sop_instance_uid"]
        else:
            _note(df, i, "neither a mask nor smaller than the case's full mammogram")
    for i in masks.index:
        df.at[i, "pairs_with"] = full["sop_instance_uid"]
        got = (df.at[i, "rows"], df.at[i, "columns"])
        if got != shape:
            _note(df, i, f"mask is {got[0]} x {got[1]}, its mammogram {shape[0]} x {shape[1]}")
    df.at[full_index, "n_masks"] = len(masks)


def _near(shape: tuple[int, int], shapes: set[tuple[int, int]]) -> bool:
    """Whether a mask's size is within 2 % of ``shape`` (some CBIS-DDSM masks are a few
    pixels off their mammogram; a crop is far smaller)."""
    return any(
        abs(r - shape[0]) <= 0.02 * shape[0] and abs(c - shape[1]) <= 0.02 * shape[1]
        for r, c in shapes
    )


def _note(df: pd.DataFrame, i: Any, text: str) -> None:
    old = df.at[i, "reason"]
    df.at[i, "reason"] = f"{old}; {text}" if isinstance(old, str) and old else text


def summed_label(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The masks of one mammogram summed into one binary label (uint8, 1 inside any mask).

    A mask of another size is brought to ``shape`` by nearest neighbour first."""
    total = np.zeros(shape, dtype=np.uint16)
    for mask in masks:
        m = np.asarray(mask) > 0
        if m.shape != shape:
            rows = (np.arange(shape[0]) * m.shape[0] // shape[0]).clip(0, m.shape[0] - 1)
            cols = (np.arange(shape[1]) * m.shape[1] // shape[1]).clip(0, m.shape[1] - 1)
            m = m[np.ix_(rows, cols)]
        total += m
    return (total > 0).astype(np.uint8)
