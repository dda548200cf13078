"""Nucleus type tables of the released HoVer-Net models: id -> name and overlay colour.

Ids are the channel indices of the ``tp`` (NC) branch; 0 is background / "no label" and never
becomes an instance's type unless no other type voted (as in the official post-processing).

- ``pannuke`` (nr_types 6): the official ``type_info.json`` of github.com/vqdang/hover_net
  (``nolabe, neopla, inflam, connec, necros, no-neo``) with its colours, names spelled out.
- ``consep`` (nr_types 5): the CoNSeP classes as merged in the HoVer-Net paper (other /
  miscellaneous, inflammatory, epithelial = healthy + malignant, spindle-shaped = fibroblast +
  muscle + endothelial); colours follow the repository README's overlay legend.
- ``monusac`` (nr_types 5): the four MoNuSAC classes in their challenge order.
"""

from __future__ import annotations

from collections.abc import Mapping

from nucscale.errors import SegmenterError

RGB = tuple[int, int, int]

TYPE_INFO: Mapping[str, Mapping[int, tuple[str, RGB]]] = {
    "pannuke": {
        0: ("background", (0, 0, 0)),
        1: ("neoplastic", (255, 0, 0)),
        2: ("inflammatory", (0, 255, 0)),
        3: ("connective", (0, 0, 255)),
        4: ("dead", (255, 255, 0)),
        5: ("non-neoplastic epithelial", (255, 165, 0)),
    },
    "consep": {
        0: ("background", (0, 0, 0)),
        1: ("miscellaneous", (0, 255, 255)),
        2: ("inflammatory", (255, 0, 0)),
        3: ("epithelial", (0, 0, 255)),
        4: ("spindle-shaped", (0, 255, 0)),
    },
    "monusac": {
        0: ("background", (0, 0, 0)),
        1: ("epithelial", (255, 0, 0)),
        2: ("lymphocyte", (255, 255, 0)),
        3: ("macrophage", (0, 255, 0)),
        4: ("neutrophil", (0, 0, 255)),
    },
}

TYPE_NAMES: Mapping[str, Mapping[int, str]] = {
    key: {i: name for i, (name, _) in table.items()} for key, table in TYPE_INFO.items()
}
TYPE_COLOURS: Mapping[str, Mapping[int, RGB]] = {
    key: {i: colour for i, (_, colour) in table.items()} for key, table in TYPE_INFO.items()
}


def type_names(type_set: str | None, nr_types: int | None) -> dict[int, str]:
    """Instance type names for a type set; ``{1: "nucleus"}`` when the model has no NC branch.

    Raises
    ------
    SegmenterError
        Unknown ``type_set`` or one whose size differs from ``nr_types``.
    """
    if nr_types is None:
        return {1: "nucleus"}
    if type_set is None:
        return {i: ("background" if i == 0 else f"type {i}") for i in range(nr_types)}
    table = TYPE_NAMES.get(type_set)
    if table is None:
        known = ", ".join(sorted(TYPE_NAMES))
        raise SegmenterError(f"unknown HoVer-Net type set {type_set!r}; known: {known}")
    if len(table) != nr_types:
        raise SegmenterError(
            f"type set {type_set!r} has {len(table)} types but nr_types={nr_types}; "
            f"pass nr_types={len(table)}"
        )
    return dict(table)


#: Colours of classes no table names: "nucleus" (models without classes), then a palette by
#: class index (matplotlib's tab10).
_NUCLEUS_COLOUR: RGB = (255, 200, 0)  # gold: stands out on H&E and on fluorescence
_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def type_colour(name: str, index: int = 0) -> RGB:
    """Overlay colour of a class by name: the colour of the first released type table (pannuke,
    consep, monusac) that has the name, else a fixed palette by class index."""
    if name == "nucleus":
        return _NUCLEUS_COLOUR
    for table in TYPE_INFO.values():
        for type_name, colour in table.values():
            if type_name == name:
                return colour
    return _PALETTE[index % len(_PALETTE)]
