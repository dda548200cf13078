"""The nucleus table: one row per nucleus, typed, versioned, each column with unit and meaning.

This module is the single source of truth for the columns: their Arrow types, units and
definitions live here (also as field metadata in every file written), and ``docs/schema.md`` is
generated from it by :func:`schema_markdown` (a test keeps the two equal).

``slide_id`` is not stored in the file: it is the hive partition
(``nuclei/slide_id=<id>/part-0.parquet``) and appears as a column when the dataset is read.

Schema versions:

- ``1`` (nucscale 0.1, before outlines): the columns below without ``geometry``.
- ``2``: adds ``geometry`` (WKB polygon, GeoParquet 1.1 metadata) and per-column metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "2"
#: Versions :func:`nucscale.store.read_nuclei` can read (older ones are upgraded on read).
KNOWN_VERSIONS = ("1", "2")

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


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str
    description: str


_PX = "level-0 px"
_SK = "as scikit-image `regionprops`"
_COLUMNS: tuple[Column, ...] = (
    Column("nucleus_id", pa.int64(), "", "Identifier of the nucleus, unique within the slide and "
           "stable across reruns: `tile index << 20 | rank` of its centroid (y, then x) in the "
           "owning tile; it is also the nucleus's value in the label image."),
    Column("tile_row", pa.int32(), "", "Row of the tile that owns the nucleus (the tile whose "
           "core holds its centroid); row groups are ordered by (tile_row, tile_col)."),
    Column("tile_col", pa.int32(), "", "Column of the tile that owns the nucleus."),
    Column("centroid_x", pa.float64(), _PX, "Centroid column in level-0 pixel indices (pixel "
           "centres at integers, as scikit-image and HoVer-Net)."),
    Column("centroid_y", pa.float64(), _PX, "Centroid row in level-0 pixel indices."),
    Column("centroid_x_um", pa.float64(), "µm", "`centroid_x` times the level-0 pixel size."),
    Column("centroid_y_um", pa.float64(), "µm", "`centroid_y` times the level-0 pixel size."),
    Column("bbox_x0", pa.int64(), _PX, "Left edge of the bounding box (half-open, pixel edges at "
           "integers: the same frame as `geometry`)."),
    Column("bbox_y0", pa.int64(), _PX, "Top edge of the bounding box."),
    Column("bbox_x1", pa.int64(), _PX, "Right edge of the bounding box (exclusive)."),
    Column("bbox_y1", pa.int64(), _PX, "Bottom edge of the bounding box (exclusive)."),
    Column("type", pa.int16(), "", "Class index from the segmenter (HoVer-Net: the "
           "model's type channel; 1 for models without classes)."),
    Column("type_name", pa.string(), "", "Class name (HoVer-Net PanNuke: neoplastic, "
           "inflammatory, connective, dead, non-neoplastic epithelial; `nucleus` for models "
           "without classes)."),
    Column("type_prob", pa.float32(), "", "Confidence of `type`: HoVer-Net, the mean type "
           "probability over the nucleus's pixels; U-Net, the mean foreground probability; "
           "baseline, the mean sigmoid of haematoxylin density above its threshold."),
    Column("area", pa.float64(), "µm²", f"Pixel count times pixel area, {_SK} `area`."),
    Column("bbox_area", pa.float64(), "µm²", f"Bounding-box area, {_SK} `area_bbox`."),
    Column("convex_area", pa.float64(), "µm²", f"Convex-hull pixel count, {_SK} `area_convex`."),
    Column("filled_area", pa.float64(), "µm²", f"Area with holes filled, {_SK} `area_filled`."),
    Column("perimeter", pa.float64(), "µm", f"4-neighbourhood perimeter, {_SK} `perimeter`."),
    Column("equivalent_diameter", pa.float64(), "µm", "Diameter of the disc of the same area, "
           f"{_SK} `equivalent_diameter_area`."),
    Column("major_axis_length", pa.float64(), "µm", "Major axis of the ellipse with the same "
           f"second moments, {_SK} `axis_major_length`."),
    Column("minor_axis_length", pa.float64(), "µm", "Minor axis of that ellipse, "
           f"{_SK} `axis_minor_length`."),
    Column("eccentricity", pa.float64(), "", f"Eccentricity of that ellipse (0 = circle), {_SK}."),
    Column("orientation", pa.float64(), "rad", "Angle between the row axis and the major axis, "
           f"in [-π/2, π/2], {_SK} `orientation`."),
    Column("extent", pa.float64(), "", "Area / bounding-box area."),
    Column("solidity", pa.float64(), "", "Area / convex area."),
    Column("euler_number", pa.int32(), "", "Components minus holes (8-connectivity), "
           f"{_SK} `euler_number`."),
    Column("inertia_tensor_eigvals_0", pa.float64(), "µm²", "Larger eigenvalue of the inertia "
           f"tensor, {_SK} `inertia_tensor_eigvals[0]`."),
    Column("inertia_tensor_eigvals_1", pa.float64(), "µm²", "Smaller eigenvalue of the inertia "
           "tensor."),
    Column("mean_r", pa.float32(), "0-255", "Mean red value of the nucleus's pixels (analysis "
           "image; fluorescence: the nuclear channel in all three)."),
    Column("mean_g", pa.float32(), "0-255", "Mean green value."),
    Column("mean_b", pa.float32(), "0-255", "Mean blue value."),
    Column("std_r", pa.float32(), "0-255", "Standard deviation of red (population, ddof=0)."),
    Column("std_g", pa.float32(), "0-255", "Standard deviation of green."),
    Column("std_b", pa.float32(), "0-255", "Standard deviation of blue."),
    Column("od_haematoxylin", pa.float32(), "OD/6", "Mean haematoxylin optical density "
           "(scikit-image `rgb2hed` channel 0: decadic OD / 6, Ruifrok-Johnston vectors)."),
    Column("od_eosin", pa.float32(), "OD/6", "Mean eosin optical density (`rgb2hed` channel 1)."),
    Column("geometry", pa.binary(), _PX, "Outline as WKB (GeoParquet 1.1, undefined engineering "
           "CRS): level-0 pixel coordinates with pixel edges at integers, tracing the edges of "
           "the nucleus's pixels (area = pixel count with holes filled; exterior rings only, "
           "counter-clockwise in (x, y)); a Polygon, or a MultiPolygon for the rare nucleus "
           "whose pixels form pieces touching only at corners."),
)  # fmt: skip

COLUMN_INFO: dict[str, Column] = {c.name: c for c in _COLUMNS}

NUCLEUS_SCHEMA = pa.schema(
    [
        pa.field(
            c.name, c.type, nullable=False, metadata={"unit": c.unit, "description": c.description}
        )
        for c in _COLUMNS
    ]
)

COLUMNS: tuple[str, ...] = tuple(NUCLEUS_SCHEMA.names)
GEOMETRY = "geometry"


def schema_markdown() -> str:
    """The column table of ``docs/schema.md``."""
    lines = ["| column | type | unit | definition |", "|---|---|---|---|"]
    for c in _COLUMNS:
        lines.append(f"| `{c.name}` | {c.type} | {c.unit} | {c.description} |")
    return "\n".join(lines) + "\n"
