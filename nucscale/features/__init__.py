"""Per-nucleus measurements and the nucleus table schema.

:func:`measure` turns a label window (analysis pixels) and its RGB image into one array per
measured column of :data:`NUCLEUS_SCHEMA`; identity and class columns are added by the caller.
:func:`morphology` gives the 15 shape measures alone, in pixels, for any label image.
"""

from nucscale.features._morphology import MEASURED_COLUMNS, measure, morphology
from nucscale.features._schema import (
    COLUMN_INFO,
    COLUMNS,
    GEOMETRY,
    INTENSITY,
    KNOWN_VERSIONS,
    MORPHOLOGY,
    NUCLEUS_SCHEMA,
    SCHEMA_VERSION,
    schema_markdown,
)

__all__ = [
    "COLUMNS",
    "COLUMN_INFO",
    "GEOMETRY",
    "INTENSITY",
    "KNOWN_VERSIONS",
    "MEASURED_COLUMNS",
    "MORPHOLOGY",
    "NUCLEUS_SCHEMA",
    "SCHEMA_VERSION",
    "measure",
    "morphology",
    "schema_markdown",
]
