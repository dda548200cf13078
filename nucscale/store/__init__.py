"""Outputs: the nucleus Parquet tables, the run manifest, atomic write helpers."""

from nucscale.store._atomic import atomic_write, replace_dir, tmp_sibling
from nucscale.store._manifest import (
    MANIFEST_SCHEMA,
    ManifestRow,
    manifest_path,
    read_manifest,
    write_manifest,
)
from nucscale.store._parquet import nuclei_path, read_metadata, with_metadata, write_nuclei

__all__ = [
    "MANIFEST_SCHEMA",
    "ManifestRow",
    "atomic_write",
    "manifest_path",
    "nuclei_path",
    "read_manifest",
    "read_metadata",
    "replace_dir",
    "tmp_sibling",
    "with_metadata",
    "write_manifest",
    "write_nuclei",
]
