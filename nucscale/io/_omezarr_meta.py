"""OME-Zarr (NGFF 0.4 / 0.5) metadata: finding the image, its axes, scales and channels.

Pure functions over the Zarr groups' JSON attributes, used by
:class:`~nucscale.io._omezarr.OmeZarrSlide` (whose docstring states the rules). Facts from the
NGFF specification relied on here:

- 0.4 keeps OME metadata at the top of a Zarr v2 group's ``.zattrs`` (``multiscales[].version``
  states the version, and may be absent); 0.5 keeps it under ``attributes.ome`` of a Zarr v3
  ``zarr.json``, with ``ome.version``;
- ``axes`` are 2-5 dicts with ``name``, ``type`` (space, time, channel or custom) and ``unit``:
  2 or 3 space axes, at most one time and one channel (or custom) axis;
- each dataset has exactly one ``scale`` (pixel size, or the factor to level 0 when there is no
  unit) and at most one ``translation``; a multiscale-wide list applies after them;
- bioformats2raw layout: ``"bioformats2raw.layout": 3`` at the top; the images are the paths of
  the ``OME`` group's ``series`` list, else the groups ``0``, ``1``, ... in order, and image ``k``
  is the ``k``-th ``Image`` of ``OME/METADATA.ome.xml``; a ``plate`` key takes precedence.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nucscale.errors import SlideFormatError
from nucscale.io._channels import NUCLEAR_NAMES, Channel
from nucscale.io._tiff import ome_wavelength_nm

log = logging.getLogger(__name__)

#: NGFF versions this reader understands.
NGFF_VERSIONS = ("0.4", "0.5")
#: Files that make a folder a Zarr node (v2 group, attributes, array; v3 node).
ZARR_MARKERS = (".zgroup", ".zattrs", ".zarray", "zarr.json")
#: Length units of the y and x axes, in µm (UDUNITS-2 names, as the spec lists them, and the
#: common abbreviations).
LENGTH_UM = {
    "angstrom": 1e-4,
    "picometer": 1e-6,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "decimeter": 1e5,
    "meter": 1e6,
}
_RGB_COLORS = ["FF0000", "00FF00", "0000FF"]
_RGB_NAMES = (["r", "g", "b"], ["red", "green", "blue"])


def is_zarr_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding Zarr metadata (a group or an array, v2 or v3)."""
    return path.is_dir() and any((path / name).is_file() for name in ZARR_MARKERS)


# -- finding the image ----------------------------------------------------------------------------
def _ome(group: zarr.Group) -> tuple[dict[str, Any], str | None]:
    """The group's OME metadata and its stated version: 0.5 keeps it under ``ome``."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        return ome, _str(ome.get("version"))
    ms = attrs.get("multiscales")
    version = (
        _str(ms[0].get("version"))
        if isinstance(ms, list) and ms and isinstance(ms[0], dict)
        else None
    )
    return attrs, version


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _open_group(path: Path, where: str = "") -> zarr.Group:
    try:
        node = zarr.open(str(path / where) if where else str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise SlideFormatError(path, f"no Zarr group at {where or 'the top'} ({exc})") from exc
    if not isinstance(node, zarr.Group):
        raise SlideFormatError(
            path,
            f"{'a' if not where else where + ' is a'} Zarr array, not an OME-Zarr image; give "
            "the image's folder (the group above its resolution levels)",
        )
    return node


def find_image(path: Path) -> tuple[zarr.Group, dict[str, Any], str, dict[str, object]]:
    """The image group at ``path`` (itself, or series 0 of a bioformats2raw layout), its OME
    metadata, its NGFF version and notes for ``read_notes``.

    Raises
    ------
    SlideFormatError
        Not an OME-Zarr image nucscale reads (the message says what it is instead).
    """
    root = _open_group(path)
    meta, version = _ome(root)
    notes: dict[str, object] = {}
    if "plate" in meta or "well" in meta:
        kind = "an HCS plate" if "plate" in meta else "an HCS well"
        example = "A/1/0" if "plate" in meta else "0"
        raise SlideFormatError(
            path,
            f"{kind}; nucscale reads one image: give one field of view, e.g. {path / example}",
        )
    if "bioformats2raw.layout" in meta:
        if meta["bioformats2raw.layout"] != 3:
            raise SlideFormatError(
                path, f"bioformats2raw.layout {meta['bioformats2raw.layout']!r} (only 3 is known)"
            )
        series = _series(root, path)
        if not series:
            raise SlideFormatError(path, "bioformats2raw layout with no image series (no group 0)")
        notes["series"] = series[0]
        notes["series_count"] = len(series)
        notes["series_rule"] = f"bioformats2raw layout: the first of {len(series)} series"
        if len(series) > 1:
            log.warning("%s: %d series; reading series 0 (%s)", path, len(series), series[0])
        image = _open_group(path, series[0])
        meta, version = _ome(image)
        root = image
    if "image-label" in meta:
        raise SlideFormatError(
            path, "a label image (a segmentation), not an image; give the image it labels"
        )
    if "multiscales" not in meta:
        raise SlideFormatError(
            path,
            "a Zarr group without OME-Zarr 'multiscales' metadata, so not an OME-Zarr image; "
            "give an OME-Zarr image (NGFF 0.4 or 0.5) or a DICOM WSI folder",
        )
    fmt = root.metadata.zarr_format
    stated = version
    if version is None:
        version = "0.4" if fmt == 2 else "0.5"
    if version not in NGFF_VERSIONS:
        raise SlideFormatError(
            path,
            f"OME-Zarr (NGFF) version {version} is not supported; nucscale reads "
            f"{' and '.join(NGFF_VERSIONS)}: convert the image to one of them",
        )
    return root, meta, version if stated else f"{version} (not stated)", notes


def _series(root: zarr.Group, path: Path) -> list[str]:
    """Image paths of a bioformats2raw layout: the OME group's ``series``, else 0, 1, 2, ..."""
    try:
        ome_group = root["OME"]
    except KeyError:
        ome_group = None
    if isinstance(ome_group, zarr.Group):
        meta, _ = _ome(ome_group)
        listed = meta.get("series")
        if isinstance(listed, list) and listed:
            return [str(s) for s in listed]
    found: list[str] = []
    while (path / str(len(found))).is_dir():
        found.append(str(len(found)))
    return found


def array_at(group: zarr.Group, path: Path, dataset: Any) -> zarr.Array:
    where = dataset.get("path") if isinstance(dataset, dict) else None
    try:
        arr = group[str(where)]
    except KeyError as exc:
        raise SlideFormatError(path, f"multiscales dataset {where!r} is missing") from exc
    if not isinstance(arr, zarr.Array):
        raise SlideFormatError(path, f"multiscales dataset {where!r} is not an array")
    return arr


def axis_roles(path: Path, axes: Any, shape: tuple[int, ...]) -> list[str]:
    """The role of each dimension of an array of ``shape``: t, c, z, y, x, or ``-`` for a
    custom axis of one entry (read at index 0; a longer one is refused)."""
    ndim = len(shape)
    if not isinstance(axes, list) or len(axes) != ndim:
        raise SlideFormatError(
            path, f"multiscales axes {axes!r} do not describe the {ndim} dimensions of the arrays"
        )
    if not all(isinstance(a, dict) and "name" in a for a in axes):
        raise SlideFormatError(path, f"multiscales axes {axes!r} are not NGFF 0.4+ axes")
    roles, space = [], []
    for i, a in enumerate(axes):
        name, kind = str(a["name"]).lower(), str(a.get("type") or "").lower()
        if kind == "time" or (not kind and name == "t"):
            roles.append("t")
        elif kind == "channel" or (not kind and name == "c"):
            roles.append("c")
        elif kind == "space" or (not kind and name in ("x", "y", "z")):
            roles.append("s")
            space.append(i)
        elif shape[i] == 1:
            roles.append("-")
        else:
            raise SlideFormatError(
                path,
                f"axis {a['name']!r} (type {a.get('type')!r}) has {shape[i]} entries; nucscale "
                "reads images of t, c, z, y and x axes",
            )
    if len(space) not in (2, 3) or roles.count("t") > 1 or roles.count("c") > 1:
        raise SlideFormatError(
            path, f"axes {[a['name'] for a in axes]} are not 2-3 space axes with optional t and c"
        )
    names = {str(axes[i]["name"]).lower(): i for i in space}
    iy, ix = (names["y"], names["x"]) if {"y", "x"} <= set(names) else (space[-2], space[-1])
    for i in space:
        roles[i] = "y" if i == iy else "x" if i == ix else "z"
    return roles


def scale_of(holder: dict, n: int) -> list[float] | None:
    """The ``scale`` vector of a dataset's (or multiscale's) coordinateTransformations."""
    for t in holder.get("coordinateTransformations") or []:
        if isinstance(t, dict) and t.get("type") == "scale":
            s = t.get("scale")
            if isinstance(s, list) and len(s) == n and all(isinstance(v, int | float) for v in s):
                return [float(v) for v in s]
    return None


# -- channels -------------------------------------------------------------------------------------
def _entries(omero: dict) -> list[dict[str, Any]] | None:
    """The ``omero`` channel entries (a non-dict entry counts as empty), or ``None``."""
    listed = omero.get("channels")
    if not isinstance(listed, list):
        return None
    return [c if isinstance(c, dict) else {} for c in listed]


def channels_of(path: Path, omero: dict, xml: list[dict[str, Any]], n: int) -> tuple[Channel, ...]:
    """The ``n`` channels: names from the ``omero`` labels, else the OME-XML ``Name``; the
    OME-XML ``Fluor`` (or its other name) as description, and its wavelengths."""
    labels = _entries(omero)
    if labels is not None and len(labels) != n:
        log.warning(
            "%s: %d omero channels for %d in the image; ignoring them", path, len(labels), n
        )
        labels = None
    xml = xml if len(xml) == n else []
    out = []
    for i in range(n):
        label = str(labels[i].get("label") or "") if labels else ""
        info = xml[i] if xml else {}
        name = label or info.get("name", "")
        desc = info.get("fluor") or (info.get("name", "") if info.get("name") != name else "")
        out.append(Channel(i, name, desc or "", info.get("emission_nm"), info.get("excitation_nm")))
    return tuple(out)


def rgb_reason(channels: tuple[Channel, ...], omero: dict, dtype: np.dtype) -> str | None:
    """Why three uint8 channels are brightfield RGB, or ``None`` when they are not."""
    if len(channels) != 3 or dtype != np.uint8:
        return None
    for ch in channels:
        words = set(re.findall(r"[a-z0-9]+", f"{ch.name} {ch.description}".lower()))
        if words & set(NUCLEAR_NAMES) or ch.emission_nm or ch.excitation_nm:
            return None  # fluorescence evidence wins
    colors = [str(c.get("color") or "").upper() for c in _entries(omero) or []]
    if colors == _RGB_COLORS:
        return "omero colours FF0000, 00FF00, 0000FF"
    if [ch.name.strip().lower() for ch in channels] in _RGB_NAMES:
        return "channels named R, G, B"
    rdefs = omero.get("rdefs")
    if isinstance(rdefs, dict) and rdefs.get("model") == "color" and not any(colors):
        return "omero rdefs model 'color' with 3 uint8 channels"
    return None


def xml_channels(path: Path, series_index: int = 0) -> list[dict[str, Any]]:
    """Name, Fluor and wavelengths (nm) of each channel of image ``series_index`` in a
    bioformats2raw layout's ``OME/METADATA.ome.xml``; empty when there is none."""
    xml_path = path / "OME" / "METADATA.ome.xml"
    if not xml_path.is_file():
        return []
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        log.warning("%s: cannot parse %s (%s); ignoring it", path, xml_path.name, exc)
        return []
    images = [el for el in root.iter() if el.tag.split("}")[-1] == "Image"]
    if series_index >= len(images):
        return []
    out = []
    for el in images[series_index].iter():
        if el.tag.split("}")[-1] != "Channel":
            continue
        out.append(
            {
                "name": el.get("Name") or "",
                "fluor": el.get("Fluor") or "",
                "emission_nm": ome_wavelength_nm(
                    el.get("EmissionWavelength"), el.get("EmissionWavelengthUnit")
                ),
                "excitation_nm": ome_wavelength_nm(
                    el.get("ExcitationWavelength"), el.get("ExcitationWavelengthUnit")
                ),
            }
        )
    return out
