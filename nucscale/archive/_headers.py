"""One index row from one file: its DICOM header (pydicom, ``stop_before_pixels``), and for the
images whose CBIS-DDSM role depends on them, whether its pixels are binary.

Every outcome is a row: a file that is not DICOM is ``skipped`` with the reason, a damaged or
inconsistent one is ``error`` with the reason. Nothing here raises for a bad file, so one file
never stops an archive (and a Dask worker never logs a traceback for one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from nucscale.archive._schema import HEADER_COLUMNS
from nucscale.io._dicom import is_dicom_file

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
#: Largest image whose pixels are decoded to decide ``binary`` (a 4,800 x 3,000 mammogram is
#: 14 Mpx; the largest CBIS-DDSM images are about 7,000 x 5,000).
_MAX_BINARY_CHECK_PX = 60_000_000
#: What pydicom and its pixel decoders raise for damaged files (each becomes an error row).
_READ_ERRORS = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    NotImplementedError,
    RuntimeError,
)


def empty_row(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """A row with every header column null but the file's identity."""
    row: dict[str, Any] = dict.fromkeys(HEADER_COLUMNS)
    row.update(path=path, size=size, mtime_ns=mtime_ns)
    return row


def header_row(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The index row of one file (never raises for the file's content)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        row = empty_row(str(p), 0, 0)
        return {**row, "status": "error", "reason": f"cannot stat: {exc.strerror or exc}"}
    row = empty_row(str(p), st.st_size, st.st_mtime_ns)
    if not is_dicom_file(p):
        return {**row, "status": "skipped", "reason": _not_dicom_reason(p, st.st_size)}
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
    except _READ_ERRORS as exc:
        return {**row, "status": "error", "reason": f"unreadable DICOM header: {_one_line(exc)}"}
    row.update(_header_columns(ds))
    sop_class = row["sop_class_uid"] or ""
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return {**row, "status": "skipped", "reason": "DICOMDIR: a directory of the archive"}
    problem = _inconsistency(ds, row)
    if problem:
        return {**row, "status": "error", "reason": problem}
    if _needs_pixels(row):
        try:
            row["binary"] = _is_binary(pydicom.dcmread(p))
        except _READ_ERRORS as exc:
            return {**row, "status": "error", "reason": f"pixels unreadable: {_one_line(exc)}"}
    row["status"] = "ok"
    return row


def header_rows(paths: list[str]) -> list[dict[str, Any]]:
    """:func:`header_row` of each path (one Dask task reads a batch)."""
    return [header_row(p) for p in paths]


def _not_dicom_reason(path: Path, size: int) -> str:
    if size < 132:
        return f"not DICOM: {size} bytes, too short for the DICOM preamble"
    return "not DICOM: no 'DICM' marker at byte 128"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def pixel_spacing(ds: Dataset) -> tuple[float | None, str | None]:
    """Row spacing in mm: PixelSpacing (at the patient or specimen), else ImagerPixelSpacing
    (at the detector, for projection radiographs), else a WSI's shared functional groups."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value:
            try:
                return float(value[0]), keyword
            except (TypeError, ValueError, IndexError):
                return None, None
    shared = ds.get("SharedFunctionalGroupsSequence")
    try:
        measures = shared[0].PixelMeasuresSequence[0]
        return float(measures.PixelSpacing[0]), "PixelMeasuresSequence"
    except (TypeError, AttributeError, IndexError, KeyError, ValueError):
        return None, None


def _kind(sop_class_uid: str, modality: str | None, has_pixels: bool) -> str:
    if sop_class_uid == VL_WSI:
        return "wsi"
    if not has_pixels:
        return "non-image"
    return "mammogram" if modality == "MG" else "image"


def _header_columns(ds: Dataset) -> dict[str, Any]:
    meta = getattr(ds, "file_meta", None)
    sop_class_uid = _text(ds, "SOPClassUID") or (
        str(meta.MediaStorageSOPClassUID) if meta and "MediaStorageSOPClassUID" in meta else None
    )
    syntax = meta.get("TransferSyntaxUID") if meta else None
    spacing, source = pixel_spacing(ds)
    rows = _int(ds, "Rows")
    modality = _text(ds, "Modality")
    return {
        "sop_class_uid": sop_class_uid,
        "sop_class": pydicom.uid.UID(sop_class_uid).name if sop_class_uid else None,
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "patient_id": _text(ds, "PatientID"),
        "modality": modality,
        "image_type": _text(ds, "ImageType"),
        "laterality": _text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        "view_position": _text(ds, "ViewPosition") or _text(ds, "PatientOrientation"),
        "series_description": _text(ds, "SeriesDescription"),
        "rows": rows,
        "columns": _int(ds, "Columns"),
        "frames": _int(ds, "NumberOfFrames") or (1 if rows else None),
        "photometric": _text(ds, "PhotometricInterpretation"),
        "bits_stored": _int(ds, "BitsStored"),
        "pixel_spacing_mm": spacing,
        "pixel_spacing_source": source,
        "transfer_syntax": syntax.name if syntax else None,
        "kind": _kind(sop_class_uid or "", modality, rows is not None),
    }


def _inconsistency(ds: Dataset, row: dict[str, Any]) -> str | None:
    """Why a header cannot be indexed as an instance, or None."""
    missing = [
        keyword
        for keyword, column in (
            ("SOPInstanceUID", "sop_instance_uid"),
            ("SOPClassUID", "sop_class_uid"),
            ("StudyInstanceUID", "study_uid"),
            ("SeriesInstanceUID", "series_uid"),
        )
        if not row[column]
    ]
    if missing:
        return "header lacks " + ", ".join(missing)
    if row["rows"] is None:
        return None
    if row["columns"] is None or row["rows"] <= 0 or row["columns"] <= 0:
        return f"image of {row['rows']} x {row['columns']} pixels"
    return _cut_short(ds, row)


def _cut_short(ds: Dataset, row: dict[str, Any]) -> str | None:
    """For uncompressed pixels: a file smaller than its pixels alone is cut short. (Compressed
    pixels have no size to check against; decoding them finds the damage.)"""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta else None
    if syntax is None or syntax.is_compressed:
        return None
    bits = _int(ds, "BitsAllocated") or 8
    samples = _int(ds, "SamplesPerPixel") or 1
    need = row["rows"] * row["columns"] * (row["frames"] or 1) * samples * bits // 8
    if row["size"] < need:
        return f"file of {row['size']} bytes, its uncompressed pixels need {need}: cut short"
    return None


def _needs_pixels(row: dict[str, Any]) -> bool:
    """Single-frame greyscale images other than WSI: the CBIS-DDSM role may need ``binary``."""
    return (
        row["kind"] in ("mammogram", "image")
        and (row["frames"] or 1) == 1
        and (row["photometric"] or "").startswith("MONOCHROME")
        and row["rows"] * row["columns"] <= _MAX_BINARY_CHECK_PX
    )


def _is_binary(ds: Dataset) -> bool:
    """True when the pixel values take at most two distinct values (an ROI mask)."""
    pixels = np.asarray(ds.pixel_array)
    first = pixels.flat[0]
    other = pixels[pixels != first]
    return other.size == 0 or bool(np.all(other == other.flat[0]))
