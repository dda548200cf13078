"""Plausibility checks on a finished slide: is what the model found likely to be nuclei?

A slide can finish with a confident table of wrong objects (collagen fibres outlined in the
stroma, specks on glass, fragments of nuclei). These measures, computed from every nucleus of
the slide, catch the usual failure modes; each one past its limit becomes a QC flag in the
manifest, the cohort table and the report. A flagged slide is "done", not "right": look at it.

Measures (fractions of the slide's nuclei):

``small_frac``
    area below :data:`SMALL_AREA_UM2` µm². About 3 % of ground-truth nuclei in DSB 2018 are
    that small at their true scale (sections grazing a nucleus); far more means fragments.
``eosin_frac`` (brightfield)
    haematoxylin optical density below eosin's: a nucleus is haematoxylin-stained by
    definition; eosin-dominant objects are stroma, fibres, red cells or tissue edges.
``glass_frac`` (brightfield)
    mean red, green and blue all above :data:`GLASS_LEVEL`: the object is on bare glass.

and ``nuclei_per_mm2`` of tissue. Objects of a type in :data:`NOT_NUCLEI` (the red cells of
``--model redcells``, eosin-stained by nature) are not held to the two stain rules. Limits are
deliberately loose: a sound model on real tissue stays well inside them (the shipped U-Net on
CMU-1: see its model card); the earlier default model failed three of them there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SMALL_AREA_UM2 = 10.0
GLASS_LEVEL = 200.0
#: measure -> largest plausible value.
LIMITS = {"small_frac": 0.10, "eosin_frac": 0.15, "glass_frac": 0.02}
#: Plausible range of nuclei per mm² of tissue (sparse fat to the densest packing of 6 µm
#: nuclei, ~35,000 per mm²).
DENSITY_RANGE = (50.0, 40_000.0)
#: Columns :func:`qc_measures` reads (``type_name`` where the table has it).
QC_COLUMNS = ("area", "mean_r", "mean_g", "mean_b", "od_haematoxylin", "od_eosin")
#: Object types that are cells, not nuclei: the stain rules do not apply to them.
NOT_NUCLEI = frozenset({"red cell"})


def qc_counts(table: pa.Table, modality: str) -> dict[str, tuple[int, int]]:
    """For each measure of the module docstring, (objects past it, objects it is taken over)
    in ``table`` (the ``QC_COLUMNS`` of nucleus rows); counts of several tables add up to
    those of their concatenation. Brightfield-only measures are left out for fluorescence,
    and the stain measures where no object is a nucleus. Column by column, without a Python
    object per nucleus."""
    n = table.num_rows
    if n == 0:
        return {}

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy().astype(np.float64)

    out = {"small_frac": (int(np.count_nonzero(col("area") < SMALL_AREA_UM2)), n)}
    nuclei = np.ones(n, dtype=bool)
    if "type_name" in table.column_names:  # plain or dictionary-encoded strings
        other = pc.is_in(table.column("type_name"), value_set=pa.array(sorted(NOT_NUCLEI)))
        nuclei = ~np.asarray(other, dtype=bool)
    m = int(np.count_nonzero(nuclei))
    if modality != "fluorescence" and m:
        eosin = (col("od_haematoxylin") < col("od_eosin"))[nuclei]
        glass = (col("mean_r") > GLASS_LEVEL) & (col("mean_g") > GLASS_LEVEL)
        glass &= col("mean_b") > GLASS_LEVEL
        out["eosin_frac"] = (int(np.count_nonzero(eosin)), m)
        out["glass_frac"] = (int(np.count_nonzero(glass[nuclei])), m)
    return out


def qc_fractions(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """The measures from :func:`qc_counts` (summed over tables, if need be)."""
    return {k: hits / total for k, (hits, total) in counts.items() if total}


def qc_measures(table: pa.Table, modality: str) -> dict[str, float]:
    """The fractions of the module docstring over the nuclei of ``table`` (the ``QC_COLUMNS``
    of a slide's nucleus table); brightfield-only measures are left out for fluorescence."""
    return qc_fractions(qc_counts(table, modality))


def qc_flags(measures: dict[str, Any], nuclei: int, tissue_mm2: float | None) -> list[str]:
    """Human-readable flags for every measure past its limit (empty: nothing suspicious)."""
    flags = []
    what = {
        "small_frac": f"tiny objects: {{:.1%}} of nuclei under {SMALL_AREA_UM2:g} µm²",
        "eosin_frac": "eosin-dominant objects (stroma, fibres?): {:.1%} of nuclei",
        "glass_frac": "objects on bare glass: {:.1%} of nuclei",
    }
    for key, limit in LIMITS.items():
        value = measures.get(key)
        if value is not None and value > limit:
            flags.append(what[key].format(value) + f" (limit {limit:.0%})")
    if tissue_mm2 and tissue_mm2 > 0:
        density = nuclei / tissue_mm2
        lo, hi = DENSITY_RANGE
        if nuclei == 0:
            flags.append(f"no nuclei in {tissue_mm2:.3g} mm² of tissue")
        elif not lo <= density <= hi:
            flags.append(f"{density:,.0f} nuclei per mm² of tissue (plausible {lo:,.0f}-{hi:,.0f})")
    return flags
