"""Mammograms of an archive through the mass model, one Dask task each (thin adapter: the
science is :mod:`nucscale.archive._mammo` and :mod:`nucscale.models.mammo`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucscale.errors import NucscaleError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MammogramInput:
    """One full mammogram of an index, with its summed truth label where it has one."""

    path: str
    mammogram_id: str
    sop_instance_uid: str
    truth_label: str | None = None
    default_spacing_mm: float | None = None  # --mpp, for files that record no pixel spacing


def segment_mammogram(item: MammogramInput, weights: str, out: str) -> dict[str, Any]:
    """Segment one mammogram and write its outputs; a bad file gives a failed row, never an
    exception (an input error is not retried, and the worker logs no traceback)."""
    row: dict[str, Any] = {
        "mammogram_id": item.mammogram_id,
        "path": item.path,
        "sop_instance_uid": item.sop_instance_uid,
        "model": weights,
        "truth_label": item.truth_label,
    }
    try:
        return {**row, **_segment(item, weights, Path(out))}
    except NucscaleError as exc:
        return {**row, "status": "failed", "error": str(exc)}
    except (OSError, ValueError, AttributeError, KeyError, TypeError, RuntimeError) as exc:
        # pydicom's decoders raise these for damaged pixel data
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return {**row, "status": "failed", "error": f"{item.path}: cannot decode pixels: {reason}"}


def _segment(item: MammogramInput, weights: str, out: Path) -> dict[str, Any]:
    from PIL import Image

    from nucscale import __version__
    from nucscale.archive._mammo import crop_and_orient, regions, to_unit
    from nucscale.archive._read import read_mammogram
    from nucscale.store import write_grey_image
    from nucscale.store._mammograms import mammogram_image_path, seg_path, write_regions, write_seg
    from nucscale.store._omezarr import labels_path

    model = _model(weights)
    m = read_mammogram(item.path)
    mask, prepared = model.segment(m)
    unit = to_unit(m.pixels, photometric=m.photometric, bits_stored=m.bits_stored,
                   window=m.window)  # fmt: skip
    spacing = m.spacing_mm or item.default_spacing_mm
    rows = regions(mask, unit, spacing)
    write_regions(out, item.mammogram_id, rows)
    spacing_um = spacing * 1000 if spacing else None
    write_grey_image(labels_path(out, item.mammogram_id), mask, spacing_um, "mass")
    enhanced = np.round(prepared.enhanced * 65535).astype(np.uint16)
    truth = {}
    if item.truth_label:
        label = (np.asarray(Image.open(item.truth_label)) > 0).astype(np.uint8)
        truth["truth"] = crop_and_orient(label, prepared.geometry)
    write_grey_image(mammogram_image_path(out, item.mammogram_id), enhanced, spacing_um,
                     item.mammogram_id, labels=truth)  # fmt: skip
    seg = write_seg(Path(item.path), mask, seg_path(out, item.mammogram_id),
                    "nucscale mammogram mass U-Net", __version__)  # fmt: skip
    area_px = float(mask.sum())
    return {
        "status": "done",
        "error": None,
        "regions": len(rows),
        "mass_area_px": area_px,
        "mass_area_mm2": area_px * spacing**2 if spacing else None,
        "spacing_mm": spacing,
        "oriented": prepared.oriented,
        "seg_path": str(seg),
    }


_MODELS: dict[str, Any] = {}


def _model(weights: str) -> Any:
    """The loaded model, once per worker process."""
    from nucscale.models.mammo import MammogramModel

    if weights not in _MODELS:
        _MODELS[weights] = MammogramModel.load(weights)
    return _MODELS[weights]


def run_mammograms(
    client: Client,
    items: list[MammogramInput],
    weights: str,
    out: Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every mammogram as a task; the table ``OUT/mammograms.parquet`` updated at the end.

    A mammogram done earlier by the same model (its row, and its outputs still there) is not
    run again; its row comes back with ``status`` "done earlier"."""
    from distributed import as_completed

    from nucscale.store._mammograms import write_mammograms_table

    start = time.monotonic()
    earlier = _done_earlier(out, weights)
    rows = [{**earlier[i.mammogram_id], "status": "done earlier"} for i in items
            if i.mammogram_id in earlier]  # fmt: skip
    items = [i for i in items if i.mammogram_id not in earlier]
    futures = [
        client.submit(
            segment_mammogram,
            item,
            weights,
            str(out),
            key=f"mammogram-{i}-{item.mammogram_id}",
            pure=False,
            retries=0,
        )
        for i, item in enumerate(items)
    ]
    for future in as_completed(futures):
        row = future.result()
        rows.append(row)
        if progress:
            progress(row)
    write_mammograms_table(out, [{**r, "status": "done"} if r["status"] == "done earlier"
                                 else r for r in rows])  # fmt: skip
    log.info("%d mammograms in %.1f s", len(rows), time.monotonic() - start)
    return rows


def _done_earlier(out: Path, weights: str) -> dict[str, dict[str, Any]]:
    """Rows of ``OUT/mammograms.parquet`` done with ``weights`` whose outputs exist."""
    import pyarrow.parquet as pq

    from nucscale.store._mammograms import mammograms_table_path, regions_path, seg_path

    path = mammograms_table_path(out)
    if not path.exists():
        return {}
    done = {}
    for row in pq.read_table(path).to_pylist():
        mid = row["mammogram_id"]
        if (row["status"] == "done" and row["model"] == weights
                and regions_path(out, mid).exists() and seg_path(out, mid).exists()):  # fmt: skip
            done[mid] = row
    return done
