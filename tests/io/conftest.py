"""Fixtures for the reader tests: a real CMU-1 region and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import pytest


@pytest.fixture(scope="session")
def cmu1_region(cmu1_svs: Path) -> np.ndarray:
    """A 640x480 tissue region of the real CMU-1 slide (RGB uint8), read with OpenSlide itself."""
    with openslide.OpenSlide(cmu1_svs) as osr:
        rgba = np.asarray(osr.read_region((400, 600), 0, (640, 480)))
    return np.ascontiguousarray(rgba[:, :, :3])


@pytest.fixture(scope="session")
def cmu1_level0(cmu1_svs: Path) -> np.ndarray:
    """The whole level 0 of the real CMU-1 SVS (2967x2220x3)."""
    with openslide.OpenSlide(cmu1_svs) as osr:
        rgba = np.asarray(osr.read_region((0, 0), 0, osr.dimensions))
    return np.ascontiguousarray(rgba[:, :, :3])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session")
def psnr() -> Callable[[np.ndarray, np.ndarray], float]:
    """Peak signal-to-noise ratio in dB of two uint8 images."""
    return _psnr


# -- DICOM WSI files written from real pixels ---------------------------------------------------
WriteWsi = Callable[..., Path]


@pytest.fixture(scope="session")
def write_wsi(highdicom_dir: Path) -> WriteWsi:
    """Write a native (uncompressed) grey DICOM WSI file on highdicom's ``sm_image_grayscale``
    header: ``write_wsi(path, image, tile=64, ...)`` with ``image`` (paths, planes, h, w).

    Frames are cut in TILED_FULL order (optical path, focal plane, row, column), padded with 0,
    then written in ``order`` (default as cut). ``layout``: ``"TILED_FULL"`` (declared, no
    per-frame groups), ``"TILED_SPARSE"`` (per-frame positions, Z offsets ``z_um`` and optical
    path identification) or ``None`` (neither). ``optical_paths``: one dict of Optical Path
    Sequence attributes per path (``OpticalPathIdentifier`` at least).
    """
    import copy

    import pydicom
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(highdicom_dir / "sm_image_grayscale.dcm")

    def write(
        path: Path,
        image: np.ndarray,
        *,
        tile: int = 64,
        layout: str | None = "TILED_FULL",
        optical_paths: list[dict[str, object]] | None = None,
        order: list[int] | None = None,
        z_um: list[float] | None = None,
        bits_stored: int | None = None,
        series_uid: str | None = None,
        photometric: str = "MONOCHROME2",
    ) -> Path:
        n_paths, n_planes, h, w = image.shape
        ny, nx = -(-h // tile), -(-w // tile)
        padded = np.zeros((n_paths, n_planes, ny * tile, nx * tile), image.dtype)
        padded[:, :, :h, :w] = image
        frames, where = [], []
        for p in range(n_paths):
            for z in range(n_planes):
                for r in range(ny):
                    for c in range(nx):
                        frames.append(
                            padded[p, z, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
                        )
                        where.append((p, z, r, c))
        order = list(range(len(frames))) if order is None else order
        paths = optical_paths or [{"OpticalPathIdentifier": str(i + 1)} for i in range(n_paths)]
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID = series_uid or generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
        ds.Rows = ds.Columns = tile
        ds.NumberOfFrames = len(order)
        ds.PhotometricInterpretation = photometric
        bits = image.dtype.itemsize * 8
        ds.BitsAllocated, ds.BitsStored = bits, bits_stored or bits
        ds.HighBit = ds.BitsStored - 1
        del ds.PixelPaddingValue
        ds.PixelData = np.ascontiguousarray(np.stack([frames[i] for i in order])).tobytes()
        items = []
        for spec in paths:
            item = pydicom.Dataset()
            for key, value in spec.items():
                setattr(item, key, value)
            items.append(item)
        ds.OpticalPathSequence = Sequence(items)
        ds.NumberOfOpticalPaths = n_paths
        ds.TotalPixelMatrixFocalPlanes = n_planes
        if layout is None:
            del ds.DimensionOrganizationType
        else:
            ds.DimensionOrganizationType = layout
        if layout == "TILED_SPARSE":
            per_frame = []
            for i in order:
                p, z, r, c = where[i]
                pos = pydicom.Dataset()
                pos.RowPositionInTotalImagePixelMatrix = r * tile + 1
                pos.ColumnPositionInTotalImagePixelMatrix = c * tile + 1
                pos.ZOffsetInSlideCoordinateSystem = (z_um or [0.0] * n_planes)[z]
                ident = pydicom.Dataset()
                ident.OpticalPathIdentifier = paths[p]["OpticalPathIdentifier"]
                item = pydicom.Dataset()
                item.PlanePositionSlideSequence = Sequence([pos])
                item.OpticalPathIdentificationSequence = Sequence([ident])
                per_frame.append(item)
            ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
