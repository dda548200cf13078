"""Labels from QuPath: the GeoJSON a user exports after classifying nucscale's detections.

What survives the round trip. nucscale's export (:mod:`nucscale.store._export`) gives each
nucleus a feature ``id`` made from slide and nucleus id (a UUID, ``feature_id``), a
``nucleus_id`` property, ``objectType: "detection"`` and the segmenter's (or the predicted)
class. QuPath 0.4 and newer read the ``id`` as the object's UUID and write it back on export;
they drop unknown properties such as ``nucleus_id``. So a nucleus is matched by its feature
id, else by a ``nucleus_id`` property (our own file, or a tool that keeps it) on the slide
named by a ``slide_id`` property, by the file name (``<slide_id>.geojson``, as ``nucscale
export`` names it) or by ``OUT`` having one slide.

The class is ``properties.classification``: ``{"name": ...}`` (QuPath 0.4+),
``{"names": [...]}`` (a derived class, joined with ": " as QuPath shows it) or a plain string;
without one, ``properties.name``. QuPath's ``Ignore*`` class and objects without a class are
not labels.

Which objects are labels. A user classifies some nuclei and exports them all, so most still
carry the class nucscale's export gave them. By default a detection whose class is its
segmenter type or its predicted class is therefore not a label (it was not changed);
``keep_unchanged`` counts those too (for a file holding only the reviewed objects, e.g.
QuPath's export of the selected objects). Annotations (regions a user drew) are skipped; a
classified detection that matches no nucleus refuses the whole file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nucscale.errors import InputError, NucscaleError
from nucscale.query import open_results
from nucscale.store import nuclei_path, read_classes
from nucscale.store._export import feature_id

log = logging.getLogger(__name__)

#: objectType values (and QuPath 0.2's class names in ``id``) of objects that are nuclei.
DETECTIONS = frozenset({"detection", "cell", "PathDetectionObject", "PathCellObject"})
IGNORE_CLASS = "Ignore*"


def class_of(props: dict[str, Any]) -> str | None:
    """The class name of a feature's properties, or None when it has none."""
    c = props.get("classification")
    name: Any = None
    if isinstance(c, str):
        name = c
    elif isinstance(c, dict):
        name = c.get("name")
        if not isinstance(name, str) and isinstance(c.get("names"), list):
            name = ": ".join(str(n) for n in c["names"])
    if not isinstance(name, str) and isinstance(props.get("name"), str):
        name = props["name"]
    if not isinstance(name, str) or not name.strip() or name.strip() == IGNORE_CLASS:
        return None
    return name.strip()


def _features(path: Path) -> list[Any]:
    """The features of a FeatureCollection, a list of Features, or one Feature."""
    try:
        with path.open(encoding="utf-8") as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    else:
        feats = doc
    if not isinstance(feats, list):
        raise InputError(path, "not GeoJSON: expected a FeatureCollection or a list of Features")
    return feats


class _Nuclei:
    """Every nucleus of the finished slides of ``out``: by export UUID, and what nucscale's
    export called it (segmenter type, predicted class)."""

    def __init__(self, out: Path, path: Path) -> None:
        try:
            with open_results(out) as res:
                self.slides = res.slide_ids()
        except NucscaleError as exc:
            raise InputError(path, f"cannot match the labels to {out}: {exc}") from None
        self.by_uuid: dict[str, tuple[str, int]] = {}
        self.ids: dict[str, set[int]] = {}
        self.given: dict[tuple[str, int], set[str]] = {}
        for sid in self.slides:
            table = pq.read_table(nuclei_path(out, sid), columns=["nucleus_id", "type_name"])
            nids = table.column("nucleus_id").to_pylist()
            self.ids[sid] = set(nids)
            for nid, name in zip(nids, table.column("type_name").to_pylist(), strict=True):
                self.by_uuid[feature_id(sid, nid)] = (sid, nid)
                self.given[(sid, nid)] = {name}
            classes = read_classes(out, sid)
            if classes is not None:
                for nid, name in zip(
                    classes.column("nucleus_id").to_pylist(),
                    classes.column("class").to_pylist(),
                    strict=True,
                ):
                    self.given.setdefault((sid, nid), set()).add(name)

    def match(self, feature: dict[str, Any], props: dict[str, Any], stem: str) -> Any:
        """(slide_id, nucleus_id) of a feature, or None."""
        fid = feature.get("id")
        if isinstance(fid, str) and fid in self.by_uuid:
            return self.by_uuid[fid]
        nid = props.get("nucleus_id")
        if isinstance(nid, bool) or not isinstance(nid, int | float):
            return None
        if not math.isfinite(nid) or nid != int(nid):
            return None
        sid = props.get("slide_id")
        if not isinstance(sid, str):
            sid = stem if stem in self.ids else (self.slides[0] if len(self.slides) == 1 else None)
        if sid in self.ids and int(nid) in self.ids[sid]:
            return (sid, int(nid))
        return None


def read_geojson_labels(path: Path, out: Path, *, keep_unchanged: bool = False) -> pd.DataFrame:
    """Labels (``slide_id``, ``nucleus_id``, ``label``) from a QuPath GeoJSON file of
    nucscale's detections (module docstring: matching, classes, which objects count).

    Raises
    ------
    InputError
        Not GeoJSON; classified detections that match no nucleus of ``out`` (their number and
        the first one named); no labelled nucleus at all.
    """
    feats = _features(path)
    nuclei = _Nuclei(out, path)
    rows: list[tuple[str, int, str]] = []
    unmatched: list[str] = []
    skipped = {"annotations": 0, "unclassified": 0, "unchanged": 0}
    for i, feature in enumerate(feats):
        if not isinstance(feature, dict):
            raise InputError(path, f"feature {i} is not a JSON object")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise InputError(path, f"feature {i}: properties is not a JSON object")
        name = class_of(props)
        where = nuclei.match(feature, props, path.stem)
        kind = props.get("objectType", props.get("object_type", feature.get("id")))
        if where is None:
            if name is not None and kind in DETECTIONS:
                unmatched.append(f"feature {i} (id {feature.get('id')!r})")
            else:
                skipped["annotations" if kind not in DETECTIONS else "unclassified"] += 1
            continue
        if name is None:
            skipped["unclassified"] += 1
        elif not keep_unchanged and name in nuclei.given.get(where, set()):
            skipped["unchanged"] += 1
        else:
            rows.append((where[0], where[1], name))
    if unmatched:
        raise InputError(
            path,
            f"{len(unmatched)} classified detection(s) match no nucleus of {out} (first: "
            f"{unmatched[0]}); classify the objects of nucscale export's GeoJSON of this output "
            "in QuPath 0.4 or newer, which keeps each object's id",
        )
    log.info(
        "%s: %d labelled nuclei; skipped %d unchanged, %d unclassified, %d annotations",
        path,
        len(rows),
        skipped["unchanged"],
        skipped["unclassified"],
        skipped["annotations"],
    )
    if not rows:
        hint = (
            f" ({skipped['unchanged']} detections keep the class nucscale exported; pass "
            "--keep-unchanged to count them)"
            if skipped["unchanged"]
            else ""
        )
        raise InputError(path, f"no classified nucleus{hint}")
    frame = pd.DataFrame(rows, columns=["slide_id", "nucleus_id", "label"])
    frame["nucleus_id"] = frame["nucleus_id"].astype(np.int64)
    return frame
