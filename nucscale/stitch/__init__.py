"""Stitching by ownership: each nucleus written once, by the tile whose core holds its centroid."""

from nucscale.stitch._ownership import (
    LOCAL_BITS,
    Owned,
    edge_labels,
    id_base,
    ids_of_ranks,
    owned_instances,
    owned_ranks,
    relabel_owned,
)
from nucscale.stitch._paint import crop_to_content, paint, split_by_chunk

__all__ = [
    "LOCAL_BITS",
    "Owned",
    "crop_to_content",
    "edge_labels",
    "id_base",
    "ids_of_ranks",
    "owned_instances",
    "owned_ranks",
    "paint",
    "relabel_owned",
    "split_by_chunk",
]
