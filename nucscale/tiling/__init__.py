"""Tissue detection, the tile grid, resampling to the analysis pixel size, the Zarr tile store."""

from nucscale.tiling._grid import Box, LevelChoice, TileGrid, choose_level, tissue_tiles
from nucscale.tiling._maps import (
    create_maps_store,
    maps_done,
    maps_extent,
    read_maps,
    write_patches,
)
from nucscale.tiling._resample import read_analysis_region
from nucscale.tiling._store import chunk_exists, create_tile_store, read_window, write_tile
from nucscale.tiling._tissue import (
    MODALITIES,
    TissueMap,
    detect_modality,
    keep_region,
    low_res_image,
    optical_density,
    tissue_area_mm2,
    tissue_mask,
    tissue_mask_for,
)

__all__ = [
    "MODALITIES",
    "Box",
    "LevelChoice",
    "TileGrid",
    "TissueMap",
    "choose_level",
    "chunk_exists",
    "create_maps_store",
    "create_tile_store",
    "detect_modality",
    "keep_region",
    "low_res_image",
    "maps_done",
    "maps_extent",
    "optical_density",
    "read_analysis_region",
    "read_maps",
    "read_window",
    "tissue_area_mm2",
    "tissue_mask",
    "tissue_mask_for",
    "tissue_tiles",
    "write_patches",
    "write_tile",
]
