"""Exports of a slide's nucleus table for the tools people already use.

- ``qupath-geojson``: a GeoJSON FeatureCollection of QuPath detections (QuPath 0.4+ reads it
  with File > Import objects, or drag and drop): each feature has ``properties.objectType =
  "detection"``, ``properties.classification = {name, color}`` and ``properties.measurements``
  (``"<column> (<unit>)"`` -> value, e.g. ``"area (µm²)"``: QuPath shows the name, so the unit
  travels with it; unitless columns keep their bare name; definitions in docs/schema.md).
  Coordinates are level-0 pixels with pixel edges at integers, QuPath's own frame. Feature ids
  are UUIDs derived from slide and nucleus id (:func:`feature_id`), so re-exporting gives the
  same ids, and QuPath (0.4+) keeps them: ``nucscale classify train --labels`` matches the
  objects a user classified in QuPath by them. When the slide has cell classes
  (``nucscale classify predict``), the classification is the predicted class (name and colour,
  :func:`nucscale.store.class_colours`) and the measurements include each ``p_<class>``.
- ``hovernet-json``: HoVer-Net's output format, ``{"mag": ..., "nuc": {id: {"bbox": [[rmin,
  cmin], [rmax, cmax]], "centroid": [x, y], "contour": [[x, y], ...], "type": int,
  "type_prob": float}}}`` with HoVer-Net's axis order (bbox in row, col; centroid and contour in
  x, y) and integer contour vertices (boundary pixel indices, as its OpenCV contours; the
  largest piece of a nucleus whose outline is a MultiPolygon), in level-0 pixels; ``mag`` is
  the magnification of that frame (10 / level-0 µm per px).
- ``csv``: every column, the outline as WKT in ``geometry_wkt``, plus ``slide_id``.

Every writer streams the table a row group (one tile) at a time and writes under a temporary
name that is renamed when complete, so a million-nucleus slide needs neither the whole table
nor the whole output in memory, and a failed export leaves no partial file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely

from nucscale.errors import InputError
from nucscale.features import COLUMN_INFO, GEOMETRY, INTENSITY, MORPHOLOGY
from nucscale.models._types import type_colour
from nucscale.store._atomic import atomic_write
from nucscale.store._classes import CLASS, class_colours, class_names_of, prob_column
from nucscale.store._parquet import read_metadata, schema_version

FORMATS = {"qupath-geojson": ".geojson", "hovernet-json": ".json", "csv": ".csv"}

#: Columns exported as QuPath measurements.
MEASUREMENTS = ("type_prob", "centroid_x_um", "centroid_y_um", *MORPHOLOGY, *INTENSITY)


def measurement_name(column: str) -> str:
    """The QuPath measurement name of ``column``: with its unit, as QuPath users read it."""
    unit = COLUMN_INFO[column].unit
    return f"{column} ({unit})" if unit else column


_NAMES = {m: measurement_name(m) for m in MEASUREMENTS}
NAMESPACE = uuid.UUID("5d0b5a4e-8f43-4a36-9a4b-6b7f2e1c0d11")  # nucscale's UUID namespace


def feature_id(slide_id: str, nucleus_id: int) -> str:
    """The GeoJSON feature id (a UUID) of a nucleus: the same on every export."""
    return str(uuid.uuid5(NAMESPACE, f"{slide_id}/{nucleus_id}"))


class _Classes:
    """A slide's cell classes by nucleus id: class, colour, probability measurements."""

    def __init__(self, table: pa.Table) -> None:
        names = class_names_of(table)
        self.colours = {k: list(v) for k, v in class_colours(names).items()}
        ids = table.column("nucleus_id").to_pylist()
        self.row = {nid: i for i, nid in enumerate(ids)}
        self.cls = table.column(CLASS).to_pylist()
        self.probs = {prob_column(n): table.column(prob_column(n)).to_numpy() for n in names}

    def of(self, nucleus_id: int) -> tuple[str, list[int], dict[str, float | None]] | None:
        i = self.row.get(nucleus_id)
        if i is None:
            return None
        probs = {m: _json_number(v[i]) for m, v in self.probs.items()}
        return self.cls[i], self.colours[self.cls[i]], probs


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    if schema_version(path) == "1":  # unknown versions raise SchemaVersionError there
        raise InputError(path, "schema version 1 table has no outlines; re-run the slide")
    yield from pq.ParquetFile(path).iter_batches(batch_size=8192)


def _json_number(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def write_qupath_geojson(
    table: Path, dest: Path, slide_id: str, classes: pa.Table | None = None
) -> int:
    """Stream ``table`` into a QuPath GeoJSON FeatureCollection at ``dest``; returns features.
    With ``classes`` (the slide's class table) each detection is classified by it."""
    count = 0
    lookup = _Classes(classes) if classes is not None else None

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write('{"type": "FeatureCollection", "features": [\n')
            for batch in _batches(table):
                count = _write_features(fh, batch, slide_id, count, lookup)
            fh.write("\n]}\n")

    atomic_write(dest, write)
    return count


def _write_features(
    fh: IO[str], batch: pa.RecordBatch, slide_id: str, count: int, classes: _Classes | None
) -> int:
    cols = batch.to_pydict()
    geometries = shapely.to_geojson(shapely.from_wkb(np.asarray(cols[GEOMETRY], dtype=object)))
    colours: dict[tuple[str, int], list[int]] = {}
    for i in range(batch.num_rows):
        nid = cols["nucleus_id"][i]
        name, index = cols["type_name"][i], cols["type"][i]
        colour = colours.setdefault((name, index), list(type_colour(name, index)))
        measurements = {_NAMES[m]: _json_number(cols[m][i]) for m in MEASUREMENTS}
        found = classes.of(nid) if classes is not None else None
        if found is not None:
            name, colour, probs = found
            measurements.update(probs)
        props: dict[str, Any] = {
            "objectType": "detection",
            "classification": {"name": name, "color": colour},
            "measurements": measurements,
            "nucleus_id": nid,
        }
        fid = feature_id(slide_id, nid)
        sep = ",\n" if count else ""
        fh.write(
            f'{sep}{{"type": "Feature", "id": "{fid}", "geometry": {geometries[i]}, '
            f'"properties": {json.dumps(props, ensure_ascii=False)}}}'
        )
        count += 1
    return count


def hovernet_mag(mpp_level0: float) -> float:
    """Objective magnification of a level-0 pixel size, by the usual 10 µm / mpp rule
    (0.25 µm/px -> 40x, 0.5 -> 20x), to one decimal."""
    return round(10.0 / mpp_level0, 1)


def write_hovernet_json(table: Path, dest: Path) -> int:
    """Stream ``table`` into HoVer-Net's JSON layout at ``dest``; returns the nuclei written.

    Keys of ``nuc`` are the nucleus ids (as strings), as HoVer-Net keys its instances.
    """
    meta = read_metadata(table)
    mag = hovernet_mag(float(meta["mpp_level0"])) if "mpp_level0" in meta else None
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(f'{{"mag": {json.dumps(mag)}, "nuc": {{\n')
            for batch in _batches(table):
                cols = batch.to_pydict()
                polys = shapely.from_wkb(np.asarray(cols[GEOMETRY], dtype=object))
                for i, poly in enumerate(polys):
                    ring = _pixel_ring(shapely.get_coordinates(_largest(poly).exterior)[:-1])
                    nuc = {
                        "bbox": [
                            [cols["bbox_y0"][i], cols["bbox_x0"][i]],
                            [cols["bbox_y1"][i], cols["bbox_x1"][i]],
                        ],
                        "centroid": [cols["centroid_x"][i], cols["centroid_y"][i]],
                        "contour": ring.tolist(),
                        "type": cols["type"][i],
                        "type_prob": _json_number(cols["type_prob"][i]),
                    }
                    sep = ",\n" if count else ""
                    fh.write(f'{sep}"{cols["nucleus_id"][i]}": {json.dumps(nuc)}')
                    count += 1
            fh.write("\n}}\n")

    atomic_write(dest, write)
    return count


def _largest(geom: shapely.Geometry) -> shapely.Polygon:
    """The polygon itself, or the largest part of a MultiPolygon (HoVer-Net has one contour)."""
    if isinstance(geom, shapely.Polygon):
        return geom
    parts = shapely.get_parts(geom)
    return parts[int(np.argmax(shapely.area(parts)))]


def _pixel_ring(edges: np.ndarray) -> np.ndarray:
    """Outline vertices (pixel-edge frame) as integer pixel indices, without repeats."""
    ring = np.floor(edges).astype(np.int64)
    keep = np.any(ring != np.roll(ring, 1, axis=0), axis=1)
    return ring[keep] if keep.any() else ring[:1]


def write_csv(table: Path, dest: Path, slide_id: str) -> int:
    """Stream ``table`` into CSV at ``dest`` (outline as WKT, plus ``slide_id``)."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        writer: pacsv.CSVWriter | None = None
        try:
            for batch in _batches(table):
                wkt = shapely.to_wkt(
                    shapely.from_wkb(batch.column(GEOMETRY).to_numpy(zero_copy_only=False)),
                    rounding_precision=-1,
                )
                out = pa.RecordBatch.from_arrays(
                    [
                        pa.array([slide_id] * batch.num_rows, pa.string()),
                        *[batch.column(n) for n in batch.schema.names if n != GEOMETRY],
                        pa.array(wkt, pa.string()),
                    ],
                    names=[
                        "slide_id",
                        *[n for n in batch.schema.names if n != GEOMETRY],
                        "geometry_wkt",
                    ],
                )
                if writer is None:
                    writer = pacsv.CSVWriter(str(tmp), out.schema)
                writer.write_batch(out)
                count += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no rows: still a header
            names = ["slide_id", *pq.read_schema(table).names]
            tmp.write_text(",".join(f'"{n}"' for n in names if n != GEOMETRY) + ',"geometry_wkt"\n')

    atomic_write(dest, write)
    return count


def export_slide(
    table: Path, fmt: str, dest: Path, slide_id: str, classes: pa.Table | None = None
) -> int:
    """Write ``table`` in ``fmt`` (one of :data:`FORMATS`) to ``dest``; returns the rows.
    ``classes`` (the slide's class table) classifies the QuPath export's detections."""
    if fmt == "qupath-geojson":
        return write_qupath_geojson(table, dest, slide_id, classes)
    if fmt == "hovernet-json":
        return write_hovernet_json(table, dest)
    if fmt == "csv":
        return write_csv(table, dest, slide_id)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
