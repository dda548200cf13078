"""Slide readers: one :class:`Slide` interface over OpenSlide, tifffile, DICOM WSI and pictures.

>>> from nucscale.io import open_slide
>>> with open_slide("CMU-1-Small-Region.svs") as slide:  # doctest: +SKIP
...     tile = slide.read_region(0, 0, 0, 512, 512)  # RGB uint8, level coordinates
"""

from nucscale.io._base import Level, Slide
from nucscale.io._channels import Channel, choose_nuclear
from nucscale.io._open import open_slide, read_region_cached, slide_info
from nucscale.io._options import ReadOptions
from nucscale.io._synthetic import (
    mosaic,
    write_flat_tiff,
    write_mosaic_tiff,
    write_pyramidal_tiff,
)

__all__ = [
    "Channel",
    "Level",
    "ReadOptions",
    "Slide",
    "choose_nuclear",
    "mosaic",
    "open_slide",
    "read_region_cached",
    "slide_info",
    "write_flat_tiff",
    "write_mosaic_tiff",
    "write_pyramidal_tiff",
]
