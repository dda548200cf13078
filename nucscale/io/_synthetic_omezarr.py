"""Writing OME-Zarr test and benchmark images from real pixels: NGFF 0.4 (Zarr v2) and 0.5
(Zarr v3), a plain image or a bioformats2raw layout, any axes, dtype, channel names and colours.

No small real OME-Zarr is redistributable here, so fixtures are written from the real CMU-1
region and the DSB 2018 fluorescence fields. The metadata is written with zarr directly, not with
ome-zarr-py, so each layout a reader meets in the wild (untyped channel names, wavelengths only in
the OME-XML, units other than micrometres, Z stacks, time series) can be made on purpose.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

Layout = Literal["image", "bioformats2raw"]
RGB_COLORS = ("FF0000", "00FF00", "0000FF")


def _halve(arr: np.ndarray, iy: int, ix: int) -> np.ndarray:
    """2 x 2 mean over axes ``iy`` and ``ix`` (an odd edge repeats itself), in ``arr``'s dtype."""
    pad = [(0, 0)] * arr.ndim
    pad[iy], pad[ix] = (0, arr.shape[iy] % 2), (0, arr.shape[ix] % 2)
    a = np.pad(arr.astype(np.float64), pad, mode="edge")
    a = np.moveaxis(a, (iy, ix), (-2, -1))
    m = (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) / 4
    m = np.moveaxis(m, (-2, -1), (iy, ix))
    return (np.rint(m) if arr.dtype.kind in "uib" else m).astype(arr.dtype)


def pyramid(data: np.ndarray, axes: str, levels: int) -> list[np.ndarray]:
    """``levels`` arrays, each the 2 x 2 mean (over y and x) of the one before."""
    iy, ix = axes.index("y"), axes.index("x")
    out = [data]
    for _ in range(levels - 1):
        out.append(_halve(out[-1], iy, ix))
    return out


def _axes(axes: str, unit: str | None) -> list[dict[str, str]]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    out = []
    for a in axes:
        entry = {"name": a, "type": kinds[a]}
        if kinds[a] == "space" and unit is not None:
            entry["unit"] = unit
        out.append(entry)
    return out


def _omero(
    n: int,
    channels: Sequence[str] | None,
    colors: Sequence[str] | None,
    rdefs_model: str | None,
    dtype: np.dtype,
) -> dict[str, Any] | None:
    if channels is None and colors is None and rdefs_model is None:
        return None
    top = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    entries = []
    for i in range(n):
        entry: dict[str, Any] = {
            "active": True,
            "window": {"start": 0.0, "end": top, "min": 0.0, "max": top},
        }
        if channels is not None:
            entry["label"] = channels[i]
        if colors is not None:
            entry["color"] = colors[i]
        entries.append(entry)
    omero: dict[str, Any] = {"channels": entries}
    if rdefs_model is not None:
        omero["rdefs"] = {"model": rdefs_model, "defaultZ": 0, "defaultT": 0}
    return omero


def _ome_attrs(group: zarr.Group, version: str, attrs: dict[str, Any]) -> None:
    """Write OME metadata where ``version`` keeps it: 0.5 under ``ome``, 0.4 at the top."""
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", **attrs}
    else:
        group.attrs.update(attrs)


def _write_image(
    group: zarr.Group,
    data: np.ndarray,
    axes: str,
    version: str,
    *,
    mpp: float | None,
    unit: str | None,
    levels: int,
    chunk: int,
    omero: dict[str, Any] | None,
    name: str,
) -> None:
    datasets = []
    for k, level in enumerate(pyramid(data, axes, levels)):
        chunks = tuple(chunk if a in "yx" else 1 for a in axes)
        extra: dict[str, Any] = {"dimension_names": tuple(axes)} if version == "0.5" else {
            "chunk_key_encoding": {"name": "v2", "separator": "/"}
        }  # fmt: skip
        arr = group.create_array(
            str(k), shape=level.shape, chunks=chunks, dtype=level.dtype, fill_value=0, **extra
        )
        arr[...] = level
        size = (mpp if mpp is not None else 1.0) * 2**k
        scale = [size if a in "yx" else 1.0 for a in axes]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms: dict[str, Any] = {"name": name, "axes": _axes(axes, unit), "datasets": datasets}
    if version == "0.4":
        ms["version"] = "0.4"
    attrs: dict[str, Any] = {"multiscales": [ms]}
    if omero is not None:
        attrs["omero"] = omero
    _ome_attrs(group, version, attrs)


def _ome_xml(
    images: int, names: Sequence[str] | None, wavelengths: Sequence[Sequence[Any]] | None, n: int
) -> str:
    ns = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
    root = ET.Element("OME", xmlns=ns)
    for i in range(images):
        image = ET.SubElement(root, "Image", ID=f"Image:{i}", Name=f"series {i}")
        pixels = ET.SubElement(image, "Pixels", ID=f"Pixels:{i}", SizeC=str(n))
        for c in range(n):
            attrs = {"ID": f"Channel:{i}:{c}"}
            if names is not None and names[c]:
                attrs["Name"] = names[c]
            if wavelengths is not None:
                emission, excitation = wavelengths[c]
                if emission is not None:
                    attrs["EmissionWavelength"] = str(emission)
                if excitation is not None:
                    attrs["ExcitationWavelength"] = str(excitation)
            ET.SubElement(pixels, "Channel", attrs)
        ET.SubElement(pixels, "MetadataOnly")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_omezarr(
    data: np.ndarray,
    path: str | os.PathLike[str],
    axes: str = "cyx",
    *,
    version: Literal["0.4", "0.5"] = "0.5",
    mpp: float | None = 0.5,
    unit: str | None = "micrometer",
    levels: int = 1,
    chunk: int = 256,
    channels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    rdefs_model: str | None = None,
    layout: Layout = "image",
    series: int = 1,
    series_list: bool = True,
    xml_names: Sequence[str] | None = None,
    wavelengths: Sequence[Sequence[Any]] | None = None,
) -> Path:
    """Write ``data`` (dimensions in ``axes`` order) as an OME-Zarr image.

    Parameters
    ----------
    data:
        The level-0 samples; ``axes`` names each dimension (a subset of ``tczyx`` with y, x).
    path:
        Folder to create (overwritten).
    version:
        ``"0.4"`` (Zarr v2, ``.zattrs``) or ``"0.5"`` (Zarr v3, ``zarr.json`` ``ome``).
    mpp, unit:
        Pixel size of level 0 and the unit of the space axes; ``unit=None`` writes no unit.
    levels:
        Pyramid levels, each the 2 x 2 mean of the one before (scale doubles on y and x).
    chunk:
        Chunk side on y and x (other axes are chunked by 1).
    channels, colors, rdefs_model:
        ``omero`` channel labels, hex colours and ``rdefs.model``; nothing written when all
        are ``None``.
    layout:
        ``"image"`` (the group is the image) or ``"bioformats2raw"`` (``series`` images in
        groups ``0``, ``1``, ...; series ``k > 0`` hold ``data`` flipped on x so a reader of the
        wrong series is caught), with an ``OME`` group (its ``series`` list when
        ``series_list``) and ``OME/METADATA.ome.xml`` (channel ``xml_names`` and
        ``wavelengths`` as (emission, excitation) nm pairs).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if len(axes) != data.ndim or not {"y", "x"} <= set(axes) or not set(axes) <= set("tczyx"):
        raise ValueError(f"axes {axes!r} do not name the {data.ndim} dimensions of data")
    p = Path(path)
    fmt: Literal[2, 3] = 3 if version == "0.5" else 2
    n = data.shape[axes.index("c")] if "c" in axes else 1
    omero = _omero(n, channels, colors, rdefs_model, data.dtype)
    root = zarr.open_group(str(p), mode="w", zarr_format=fmt)

    def image(group: zarr.Group, pixels: np.ndarray, name: str) -> None:
        _write_image(
            group, pixels, axes, version, mpp=mpp, unit=unit, levels=levels, chunk=chunk,
            omero=omero, name=name,
        )  # fmt: skip

    if layout == "image":
        image(root, data, p.name)
        return p
    _ome_attrs(root, version, {"bioformats2raw.layout": 3})
    names = [str(k) for k in range(series)]
    for k in names:
        pixels = data if k == "0" else np.flip(data, axis=axes.index("x"))
        image(root.create_group(k), pixels, f"series {k}")
    ome = root.create_group("OME")
    if series_list:
        _ome_attrs(ome, version, {"series": names})
    (p / "OME" / "METADATA.ome.xml").write_text(_ome_xml(series, xml_names, wavelengths, n))
    return p


def write_rgb_omezarr(
    rgb: np.ndarray,
    path: str | os.PathLike[str],
    *,
    mpp: float | None = 0.5,
    version: Literal["0.4", "0.5"] = "0.5",
    levels: int = 1,
    chunk: int = 256,
    layout: Layout = "image",
) -> Path:
    """An RGB uint8 (h, w, 3) image as OME-Zarr the way converters write brightfield slides:
    three uint8 channels coloured FF0000, 00FF00, 0000FF (axes c, y, x; t, c, z, y, x in a
    bioformats2raw layout, as bioformats2raw writes)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 array (h, w, 3), got {rgb.dtype} {rgb.shape}")
    cyx = np.moveaxis(rgb, -1, 0)
    data, axes = (cyx[None, :, None], "tczyx") if layout == "bioformats2raw" else (cyx, "cyx")
    return write_omezarr(
        data, path, axes, version=version, mpp=mpp, levels=levels, chunk=chunk,
        channels=["R", "G", "B"] if layout == "image" else None, colors=RGB_COLORS,
        layout=layout,
    )  # fmt: skip
