"""The index table's columns: one row per file of an archive (``nucscale index``).

The contract between indexing, the CBIS-DDSM assignment, the flat layout and anything that reads
an index (``nucscale run INDEX.parquet``). Imports no implementation.
"""

from __future__ import annotations

import pyarrow as pa

#: Written into the Parquet file's metadata; an index of another version is refused on reuse.
INDEX_VERSION = "1"

#: Row status: ``ok`` (a DICOM instance whose header was read), ``skipped`` (not an image of an
#: archive: not DICOM, a DICOMDIR), ``error`` (unreadable or inconsistent; ``reason`` says why).
STATUSES = ("ok", "skipped", "error")

#: Derived ``kind`` of an instance: a VL Whole Slide Microscopy image, a mammogram (modality
#: MG), another image with pixel data, or an object without pixels (SR, presentation state...).
KINDS = ("wsi", "mammogram", "image", "non-image")

#: CBIS-DDSM roles found from pixels and header, never from the file name.
ROLES = ("full", "crop", "mask")

_STR = pa.string()
_INT = pa.int64()
_FLOAT = pa.float64()

#: What the header pass writes (one task per file; reused for an unchanged file).
HEADER_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", _STR),
    ("size", _INT),
    ("mtime_ns", _INT),
    ("status", _STR),
    ("reason", _STR),
    ("sop_class_uid", _STR),
    ("sop_class", _STR),
    ("study_uid", _STR),
    ("series_uid", _STR),
    ("sop_instance_uid", _STR),
    ("patient_id", _STR),
    ("modality", _STR),
    ("image_type", _STR),
    ("laterality", _STR),
    ("view_position", _STR),
    ("series_description", _STR),
    ("rows", _INT),
    ("columns", _INT),
    ("frames", _INT),
    ("photometric", _STR),
    ("bits_stored", _INT),
    ("pixel_spacing_mm", _FLOAT),
    ("pixel_spacing_source", _STR),
    ("transfer_syntax", _STR),
    ("kind", _STR),
    # pixels, read only where a role needs them (single-frame greyscale non-WSI images): True
    # when the values take at most two distinct values (a binary ROI mask)
    ("binary", pa.bool_()),
)

#: What the CBIS-DDSM assignment derives from the folder names, the header and ``binary``.
CBIS_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("abnormality", _STR),  # mass | calcification
    ("split", _STR),  # train | test
    ("case_patient", _STR),  # P_00038
    ("side", _STR),  # LEFT | RIGHT
    ("view", _STR),  # CC | MLO
    ("abnormality_number", _INT),  # 1, 2, ... for crops and masks; null for the full image
    ("role", _STR),  # full | crop | mask
    ("pairs_with", _STR),  # the full mammogram's SOP Instance UID (crops and masks)
    ("n_masks", _INT),  # on a full mammogram: how many masks were summed into its label
    ("label_path", _STR),  # on a full mammogram: its summed label image
)

INDEX_SCHEMA = pa.schema([pa.field(n, t) for n, t in HEADER_FIELDS + CBIS_FIELDS])
HEADER_COLUMNS = tuple(n for n, _ in HEADER_FIELDS)
CBIS_COLUMNS = tuple(n for n, _ in CBIS_FIELDS)
