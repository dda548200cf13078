"""Outputs: the nucleus (Geo)Parquet tables, the cell-class tables, the cohort table, OME-Zarr
labels and images, the run manifest, atomic write helpers, and the rule for slide ids that name
paths."""

from nucscale.store._atomic import atomic_write, replace_dir, tmp_sibling
from nucscale.store._classes import (
    class_colours,
    classes_path,
    classes_schema,
    read_classes,
    write_classes,
)
from nucscale.store._ids import MAX_ID_LENGTH, check_slide_id, clean_slide_id
from nucscale.store._manifest import (
    MANIFEST_SCHEMA,
    ManifestRow,
    ManifestWriter,
    manifest_path,
    read_manifest,
    write_manifest,
)
from nucscale.store._omezarr import (
    add_painted_levels,
    create_label_image,
    finish_label_image,
    image_path,
    labels_path,
    level0,
    open_labels,
    paint_levels,
    write_grey_image,
    write_image,
)
from nucscale.store._parquet import (
    SchemaVersionError,
    features_path,
    geo_metadata,
    nuclei_path,
    read_metadata,
    read_nuclei,
    schema_version,
    with_metadata,
    write_nuclei,
)
from nucscale.store._slides import (
    KEY_FEATURES,
    SLIDES_SCHEMA,
    slides_path,
    summarize,
    write_slides_table,
)

__all__ = [
    "KEY_FEATURES",
    "MANIFEST_SCHEMA",
    "MAX_ID_LENGTH",
    "SLIDES_SCHEMA",
    "ManifestRow",
    "ManifestWriter",
    "SchemaVersionError",
    "add_painted_levels",
    "atomic_write",
    "check_slide_id",
    "class_colours",
    "classes_path",
    "classes_schema",
    "clean_slide_id",
    "create_label_image",
    "features_path",
    "finish_label_image",
    "geo_metadata",
    "image_path",
    "labels_path",
    "level0",
    "manifest_path",
    "nuclei_path",
    "open_labels",
    "paint_levels",
    "read_classes",
    "read_manifest",
    "read_metadata",
    "read_nuclei",
    "replace_dir",
    "schema_version",
    "slides_path",
    "summarize",
    "tmp_sibling",
    "with_metadata",
    "write_classes",
    "write_grey_image",
    "write_image",
    "write_manifest",
    "write_nuclei",
    "write_slides_table",
]
