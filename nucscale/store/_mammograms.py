"""Outputs of mammogram mass segmentation in a results folder.

- ``OUT/mammograms.parquet``: one row per mammogram (status, regions, mass area, paths);
- ``OUT/regions/<id>.parquet``: one row per segmented region (area in mm², bounding box,
  centroid, maximum diameter, mean intensity), queried like the nucleus table;
- ``OUT/labels/<id>.zarr``: the mass mask as an NGFF label image on the mammogram's pixels;
- ``OUT/mammograms/<id>.zarr``: the preprocessed mammogram (16-bit) with its summed truth
  mask as a label, where the index has one;
- ``OUT/seg/<id>.dcm``: the mask as a DICOM Segmentation (highdicom) referencing its source
  image, for PACS viewers.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nucscale.store._atomic import atomic_write
from nucscale.store._ids import check_slide_id

REGIONS_SCHEMA = pa.schema(
    [
        ("mammogram_id", pa.string()),
        ("region", pa.int64()),
        ("area_px", pa.float64()),
        ("area_mm2", pa.float64()),
        ("bbox_y0", pa.int64()),
        ("bbox_x0", pa.int64()),
        ("bbox_y1", pa.int64()),
        ("bbox_x1", pa.int64()),
        ("centroid_y", pa.float64()),
        ("centroid_x", pa.float64()),
        ("max_diameter_px", pa.float64()),
        ("max_diameter_mm", pa.float64()),
        ("mean_intensity", pa.float64()),
    ]
)

MAMMOGRAMS_SCHEMA = pa.schema(
    [
        ("mammogram_id", pa.string()),
        ("path", pa.string()),
        ("sop_instance_uid", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("regions", pa.int64()),
        ("mass_area_mm2", pa.float64()),
        ("mass_area_px", pa.float64()),
        ("spacing_mm", pa.float64()),
        ("oriented", pa.string()),
        ("model", pa.string()),
        ("seg_path", pa.string()),
        ("truth_label", pa.string()),
    ]
)


def mammogram_id(sop_instance_uid: str) -> str:
    """A stable id safe as a file name: ``mg-<SOP Instance UID>``."""
    return f"mg-{sop_instance_uid}"


def regions_path(out: Path, mammogram_id: str) -> Path:
    check_slide_id(mammogram_id, out)
    return Path(out) / "regions" / f"{mammogram_id}.parquet"


def seg_path(out: Path, mammogram_id: str) -> Path:
    check_slide_id(mammogram_id, out)
    return Path(out) / "seg" / f"{mammogram_id}.dcm"


def mammogram_image_path(out: Path, mammogram_id: str) -> Path:
    check_slide_id(mammogram_id, out)
    return Path(out) / "mammograms" / f"{mammogram_id}.zarr"


def mammograms_table_path(out: Path) -> Path:
    return Path(out) / "mammograms.parquet"


def write_regions(out: Path, mammogram_id: str, rows: list[dict[str, Any]]) -> Path:
    """The regions of one mammogram (an empty table when none was found)."""
    table = pa.Table.from_pylist(
        [{"mammogram_id": mammogram_id, **r} for r in rows], schema=REGIONS_SCHEMA
    )
    path = regions_path(out, mammogram_id)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_mammograms_table(out: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows replace earlier rows of the same mammogram; the others are kept."""
    path = mammograms_table_path(out)
    merged: dict[str, dict[str, Any]] = {}
    if path.exists():
        for row in pq.read_table(path).to_pylist():
            merged[row["mammogram_id"]] = row
    for row in rows:
        merged[row["mammogram_id"]] = {k: row.get(k) for k in MAMMOGRAMS_SCHEMA.names}
    table = pa.Table.from_pylist(sorted(merged.values(), key=lambda r: r["mammogram_id"]),
                                 schema=MAMMOGRAMS_SCHEMA)  # fmt: skip
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_seg(source: Path, mask: np.ndarray, path: Path, model: str, version: str) -> Path:
    """The binary mass mask as a DICOM Segmentation of ``source`` (one segment, 'Mass')."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    ds = pydicom.dcmread(source)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model[:64], version=version, family=codes.cid7162.ArtificialIntelligence
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="mass",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Mass,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    uid_seed = [ds.SOPInstanceUID, "nucscale-seg", model, version]
    with warnings.catch_warnings():
        # highdicom warns about source headers it copies (a one-component patient name)
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=[ds],
            pixel_array=(np.asarray(mask) > 0).astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=pydicom.uid.generate_uid(entropy_srcs=[*uid_seed, "series"]),
            series_number=100,
            sop_instance_uid=pydicom.uid.generate_uid(entropy_srcs=[*uid_seed, "instance"]),
            instance_number=1,
            manufacturer="nucscale",
            manufacturer_model_name="nucscale",
            software_versions=version,
            device_serial_number="none",
        )
    atomic_write(path, lambda tmp: seg.save_as(tmp))
    return path
