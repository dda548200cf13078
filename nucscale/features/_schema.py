"""The nucleus table: one row per nucleus, typed, versioned.

Units: positions in level-0 pixels (``*_um`` columns in µm); lengths in µm; areas in µm²;
``orientation`` in radians (scikit-image convention: angle between the row axis and the major
axis, in [-pi/2, pi/2]). ``slide_id`` is not stored in the file: it is the hive partition
(``nuclei/slide_id=<id>/part-0.parquet``) and appears as a column when the dataset is read.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

#: Morphology measures of the HoVer-Net feature extraction, with their unit kind.
MORPHOLOGY: dict[str, str] = {
    "area": "area",
    "bbox_area": "area",
    "convex_area": "area",
    "filled_area": "area",
    "perimeter": "length",
    "equivalent_diameter": "length",
    "major_axis_length": "length",
    "minor_axis_length": "length",
    "eccentricity": "none",
    "orientation": "none",
    "extent": "none",
    "solidity": "none",
    "euler_number": "none",
    "inertia_tensor_eigvals_0": "area",
    "inertia_tensor_eigvals_1": "area",
}

INTENSITY = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "od_haematoxylin", "od_eosin")

NUCLEUS_SCHEMA = pa.schema(
    [
        pa.field("nucleus_id", pa.int64(), nullable=False),
        pa.field("tile_row", pa.int32(), nullable=False),
        pa.field("tile_col", pa.int32(), nullable=False),
        pa.field("centroid_x", pa.float64(), nullable=False),
        pa.field("centroid_y", pa.float64(), nullable=False),
        pa.field("centroid_x_um", pa.float64(), nullable=False),
        pa.field("centroid_y_um", pa.float64(), nullable=False),
        pa.field("bbox_x0", pa.int64(), nullable=False),
        pa.field("bbox_y0", pa.int64(), nullable=False),
        pa.field("bbox_x1", pa.int64(), nullable=False),
        pa.field("bbox_y1", pa.int64(), nullable=False),
        pa.field("type", pa.int16(), nullable=False),
        pa.field("type_name", pa.string(), nullable=False),
        pa.field("type_prob", pa.float32(), nullable=False),
        *[
            pa.field(name, pa.int32() if name == "euler_number" else pa.float64(), nullable=False)
            for name in MORPHOLOGY
        ],
        *[pa.field(name, pa.float32(), nullable=False) for name in INTENSITY],
    ]
)

COLUMNS: tuple[str, ...] = tuple(NUCLEUS_SCHEMA.names)
