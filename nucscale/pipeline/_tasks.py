"""The tasks of a slide's graph: thin adapters from plans to the pure stage functions.

Every task is idempotent and keyed by (slide, stage, tile): it first checks whether its output
already exists (a zarr chunk, a fragment file) and returns at once if so, so a rerun recomputes
only unfinished work. Outputs are written under temporary names and renamed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from nucscale import __version__
from nucscale.features import NUCLEUS_SCHEMA, measure
from nucscale.features._cellprofiler import (
    FULL_SCHEMA,
    NEIGHBOUR_RADIUS_UM,
    TEXTURE_LEVELS,
    TEXTURE_RANGE,
    ZERNIKE_DEGREE,
    neighbours,
    window_columns,
)
from nucscale.infer import Segmentation
from nucscale.infer._dense import DenseSegmenter
from nucscale.pipeline._fragments import load_piece, save_pieces
from nucscale.pipeline._fragments import stem as _stem
from nucscale.pipeline._plan import SlidePlan
from nucscale.stitch import (
    crop_to_content,
    id_base,
    owned_instances,
    owned_ranks,
    paint,
    split_by_chunk,
)
from nucscale.store import (
    atomic_write,
    features_path,
    finish_label_image,
    image_path,
    labels_path,
    nuclei_path,
    paint_levels,
    read_metadata,
    replace_dir,
    summarize,
    write_image,
    write_nuclei,
)
from nucscale.tiling import (
    Box,
    chunk_exists,
    maps_done,
    read_analysis_region,
    read_maps,
    read_window,
    write_patches,
    write_tile,
)

#: Stages of a segment task, in order (seconds of each are reported per tile and summed).
SEGMENT_STAGES = ("read_s", "model_s", "postprocess_s", "features_s", "fragment_s")


@dataclass(frozen=True)
class TileStats:
    """What a segment task reports: nuclei owned, seconds spent (total and per stage of
    :data:`SEGMENT_STAGES`), whether an earlier (interrupted) run had finished the tile."""

    nuclei: int
    seconds: float
    reused: bool = False
    stages: tuple[float, ...] = (0.0,) * len(SEGMENT_STAGES)


@dataclass(frozen=True)
class SlideResult:
    """What finalising a slide reports to the client. Times are seconds summed over tasks:
    ``segment_s`` splits into ``stages`` (:data:`SEGMENT_STAGES`); ``paint_s`` is the label
    painting, ``write_s`` the finalisation (table, label pyramid)."""

    slide_id: str
    nuclei: int
    ingest_s: float
    segment_s: float
    write_s: float
    tiles_reused: int = 0
    stages: tuple[float, ...] = (0.0,) * len(SEGMENT_STAGES)
    paint_s: float = 0.0
    qc_flags: tuple[str, ...] = ()


def ingest_tile(plan: SlidePlan, row: int, col: int) -> float:
    """Read tile (row, col) at the analysis pixel size and store it in the Zarr tile store."""
    if chunk_exists(plan.tile_store, row, col):
        return 0.0
    t0 = time.perf_counter()
    box = plan.grid.core(row, col)
    fill = 0 if plan.modality == "fluorescence" else 255  # as the tile store pads
    pixels = read_analysis_region(plan.path, plan.choice, box, plan.options, fill)
    write_tile(plan.tile_store, row, col, box, pixels)
    return time.perf_counter() - t0


def segment_tile(plan: SlidePlan, row: int, col: int, *ingested: float) -> TileStats:
    """Segment tile (row, col) with its halo (a one-stage segmenter: the classical baseline),
    keep the nuclei it owns, measure them.

    Writes ``<stem>.npz`` (the owned nuclei's ranks over their bounding box, by output chunk:
    :mod:`nucscale.pipeline._fragments`) then ``<stem>.parquet`` (the feature fragment); the
    Parquet file is the tile's completion marker.
    """
    done = _finished(plan, row, col)
    if done is not None:
        return done
    t0 = time.perf_counter()
    grid = plan.grid
    window = grid.window(row, col)
    rgb = read_window(plan.tile_store, window)
    t1 = time.perf_counter()
    seg = plan.segmenter_instance().segment(
        rgb, plan.calibration, (window.x0, window.y0), (grid.width, grid.height)
    )
    t2 = time.perf_counter()
    n, t3 = _own_measure_write(plan, row, col, seg, rgb)
    stages = (t1 - t0, seg.model_s, t2 - t1 - seg.model_s, t3 - t2, time.perf_counter() - t3)
    return TileStats(n, time.perf_counter() - t0, stages=stages)


def _finished(plan: SlidePlan, row: int, col: int) -> TileStats | None:
    """The stats of tile (row, col) when an earlier (interrupted) run wrote its fragment."""
    frag = plan.fragments / f"{_stem(row, col)}.parquet"
    if not frag.exists():
        return None
    return TileStats(pq.read_metadata(frag).num_rows, 0.0, reused=True)


def forward_tile(plan: SlidePlan, row: int, col: int, *ingested: float) -> TileStats:
    """Run the network over the patches of tile (row, col) (:meth:`SlidePlan.forward_patches`)
    and write their maps to the slide's maps store: each output pixel is computed once, by
    the one tile its patch starts in. The only task that needs a GPU."""
    if maps_done(plan.maps_store, row, col):
        return TileStats(0, 0.0)
    t0 = time.perf_counter()
    starts = plan.forward_patches(row, col)
    segmenter = plan.segmenter_instance()
    assert isinstance(segmenter, DenseSegmenter)
    box = segmenter.input_box(starts)
    rgb = read_window(plan.tile_store, box)
    t1 = time.perf_counter()
    # each batch's maps are stored as they come: the tile's maps are never held whole
    batches = segmenter.forward(rgb, (box.x0, box.y0), starts, plan.calibration)
    write_s = write_patches(plan.maps_store, row, col, batches)
    t2 = time.perf_counter()
    return TileStats(0, t2 - t0, stages=(t1 - t0, t2 - t1 - write_s, 0.0, 0.0, write_s))


def instances_tile(plan: SlidePlan, row: int, col: int, *ready: Any) -> TileStats:
    """Instances of tile (row, col) from the stored maps of its window (halo included), then
    ownership, measures and fragments as :func:`segment_tile`; no network runs here."""
    done = _finished(plan, row, col)
    if done is not None:
        return done
    t0 = time.perf_counter()
    grid = plan.grid
    window = grid.window(row, col)
    segmenter = plan.segmenter_instance()
    assert isinstance(segmenter, DenseSegmenter)
    valid = segmenter.valid_box(window, (grid.width, grid.height))
    maps = read_maps(plan.maps_store, valid) if valid is not None else np.zeros((0, 0, 0))
    t1 = time.perf_counter()
    seg = segmenter.instances(maps, valid, window, grid.core(row, col))
    # the maps are not needed for measuring, the pixels not for post-processing: held one
    # after the other, not together (38 and 19 MiB of a 2560² window)
    del maps
    t2 = time.perf_counter()
    rgb = read_window(plan.tile_store, window)
    t3 = time.perf_counter()
    n, t4 = _own_measure_write(plan, row, col, seg, rgb)
    stages = (t1 - t0 + t3 - t2, 0.0, t2 - t1, t4 - t3, time.perf_counter() - t4)
    return TileStats(n, time.perf_counter() - t0, stages=stages)


def _own_measure_write(
    plan: SlidePlan, row: int, col: int, seg: Segmentation, rgb: np.ndarray
) -> tuple[int, float]:
    """Keep the nuclei tile (row, col) owns (and the tissue rule keeps), measure them, write
    the tile's fragments; returns (nuclei, the time the writing started). ``seg.labels`` is
    overwritten (by the owned nuclei's ranks)."""
    grid = plan.grid
    window, core = grid.window(row, col), grid.core(row, col)
    labels, view = seg.labels, window
    if seg.valid is not None:  # a dense model covers whole patches of its grid only
        x0, y0, x1, y1 = seg.valid
        labels, rgb = labels[y0:y1, x0:x1], rgb[y0:y1, x0:x1]
        view = Box(window.x0 + x0, window.y0 + y0, window.x0 + x1, window.y0 + y1)
    image = Box(0, 0, grid.width, grid.height)
    labels = _clip_to_image(labels, view, image)
    keep = plan.tissue.contains if plan.tissue is not None else None
    owned = owned_instances(labels, view, core, grid.index(row, col), image, keep)
    n = owned.labels.size
    # measured as ranks 1..n over the owned nuclei's box: each nucleus is measured on its own
    # mask, so the other labels of the window and the halo beyond them change nothing; pixel
    # lists of the whole window's nuclei were 76 MiB of a 2560² window's peak. The ranks
    # overwrite the segmentation's labels, unless the full features still need them.
    into = labels if plan.features != "full" and labels.flags.writeable else None
    box, ranks = crop_to_content(view, owned_ranks(labels, owned, out=into))
    inside = (slice(box.y0 - view.y0, box.y1 - view.y0), slice(box.x0 - view.x0, box.x1 - view.x0))
    cols = measure(
        ranks, rgb[inside], np.arange(1, n + 1), mpp=plan.choice.mpp, scale=plan.scale,
        origin=(box.x0, box.y0),
    )  # fmt: skip
    types = seg.types[owned.labels - 1] if n else np.zeros(0, np.int16)
    cols.update(
        nucleus_id=owned.nucleus_ids,
        tile_row=np.full(n, row, np.int32),
        tile_col=np.full(n, col, np.int32),
        type=types.astype(np.int16),
        type_name=_type_names(types, plan.segmenter_instance().type_names),
        type_prob=(seg.probs[owned.labels - 1] if n else np.zeros(0)).astype(np.float32),
    )
    table = pa.Table.from_pydict({k: cols[k] for k in NUCLEUS_SCHEMA.names}, schema=NUCLEUS_SCHEMA)
    if plan.features == "full":
        _write_full_fragment(plan, row, col, labels, rgb, owned.labels, cols)
    t3 = time.perf_counter()
    chunks = [(t, grid.core(*t)) for t in grid.neighbours(row, col, grid.reach)]
    # split as int32 ranks (views of ``ranks``); the ids are their tile's base | rank
    pieces = split_by_chunk(box, ranks, chunks)
    npz = plan.fragments / f"{_stem(row, col)}.npz"
    atomic_write(npz, lambda tmp: save_pieces(tmp, pieces, id_base(grid.index(row, col))))
    frag = plan.fragments / f"{_stem(row, col)}.parquet"
    atomic_write(frag, lambda tmp: pq.write_table(table, tmp))
    return n, t3


def _write_full_fragment(
    plan: SlidePlan,
    row: int,
    col: int,
    labels: np.ndarray,
    rgb: np.ndarray,
    ids: np.ndarray,
    cols: dict[str, np.ndarray],
) -> None:
    """The tile's CellProfiler-style columns (``--features full``), one row per owned nucleus,
    as the fragment ``<tile>.full.parquet`` (neighbours are added when the slide is done)."""
    full = window_columns(
        labels, rgb, ids, modality=plan.modality, mpp=plan.choice.mpp,
        area=cols["area"], perimeter=cols["perimeter"],
    )  # fmt: skip
    n = len(ids)
    data = {"nucleus_id": cols["nucleus_id"], **full, "neighbours": np.zeros(n, np.int64),
            "nearest_neighbour_distance": np.full(n, np.nan)}  # fmt: skip
    table = pa.Table.from_pydict(data, schema=FULL_SCHEMA)
    frag = plan.fragments / f"{_stem(row, col)}.full.parquet"
    atomic_write(frag, lambda tmp: pq.write_table(table, tmp))


def _write_features_table(plan: SlidePlan, final: Path, frags: list[Path]) -> None:
    """``OUT/features/slide_id=<id>/part-0.parquet``: the tiles' full fragments joined, with
    each nucleus's neighbours counted over the whole slide's centroids (exact across tiles)."""
    table = (
        pa.concat_tables([pq.read_table(f) for f in frags]) if frags else FULL_SCHEMA.empty_table()
    )
    centroids = pq.read_table(final, columns=["nucleus_id", "centroid_x_um", "centroid_y_um"])
    order = {int(v): i for i, v in enumerate(centroids["nucleus_id"].to_numpy())}
    rows = np.array([order[int(v)] for v in table["nucleus_id"].to_numpy()], dtype=np.int64)
    near = neighbours(
        centroids["centroid_x_um"].to_numpy()[rows],
        centroids["centroid_y_um"].to_numpy()[rows],
        NEIGHBOUR_RADIUS_UM,
    )
    for name in ("neighbours", "nearest_neighbour_distance"):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(near[name]))
    table = table.sort_by("nucleus_id")
    table = table.replace_schema_metadata(
        {b"nucscale.settings_key": plan.key.encode(),
         b"nucscale.features": json.dumps({"texture_levels": TEXTURE_LEVELS,
                                           "texture_range": TEXTURE_RANGE,
                                           "neighbour_radius_um": NEIGHBOUR_RADIUS_UM,
                                           "zernike_degree": ZERNIKE_DEGREE}).encode()}
    )  # fmt: skip
    dest = features_path(Path(plan.out), plan.slide_id)
    atomic_write(dest, lambda tmp: pq.write_table(table, tmp))


def _type_names(types: np.ndarray, names: Mapping[int, str]) -> pa.Array:
    """The name of each type code (its number when the segmenter names none), as Arrow
    strings built from the few distinct codes (no Python string per nucleus)."""
    codes, inverse = np.unique(types, return_inverse=True)
    table = pa.array([names.get(int(t), str(int(t))) for t in codes], pa.string())
    return table.take(pa.array(inverse.ravel().astype(np.int32)))


def _clip_to_image(labels: np.ndarray, view: Box, image: Box) -> np.ndarray:
    """``labels`` with pixels outside the image set to 0: a nucleus at the slide's edge may be
    predicted a pixel into the padding, which is not the slide (and not in the label image)."""
    inner = view.intersect(image)
    if inner == view:
        return labels
    clipped = np.zeros_like(labels)
    if inner is not None:
        ys = slice(inner.y0 - view.y0, inner.y1 - view.y0)
        xs = slice(inner.x0 - view.x0, inner.x1 - view.x0)
        clipped[ys, xs] = labels[ys, xs]
    return clipped


def paint_chunk(plan: SlidePlan, row: int, col: int, *segmented: TileStats) -> float:
    """Paint the label chunk of tile (row, col) from the owned nuclei of the tiles around it;
    returns the seconds spent."""
    t0 = time.perf_counter()
    grid = plan.grid
    pieces = []
    for r, c in grid.neighbours(row, col, grid.reach):
        npz = plan.fragments / f"{_stem(r, c)}.npz"
        piece = load_piece(npz, row, col) if npz.exists() else None
        if piece is not None:
            pieces.append(piece)
    chunk = grid.core(row, col)
    labels = paint(chunk, pieces)
    if labels.any():  # the chunks of level 0 are the grid's cores
        paint_levels(plan.labels_store, row, col, labels)
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Tally:
    """The reports of some of a slide's tasks, summed: seconds per stage, tiles reused.

    The graph gives each tile row one tally task (:func:`tally_tasks`) and finalize waits for
    the tallies, not for every task: once a row is tallied, Dask forgets its tasks, so a
    worker's held results and task states stay bounded by the rows in flight instead of
    growing with the slide (they were ~1,300 per worker at the end of a 40,000² slide)."""

    ingest_s: float = 0.0
    segment_s: float = 0.0
    stages: tuple[float, ...] = (0.0,) * len(SEGMENT_STAGES)
    paint_s: float = 0.0
    reused: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.ingest_s + other.ingest_s,
            self.segment_s + other.segment_s,
            tuple(a + b for a, b in zip(self.stages, other.stages, strict=True)),
            self.paint_s + other.paint_s,
            self.reused + other.reused,
        )


def tally_tasks(
    plan: SlidePlan,
    ingested: list[float],
    segmented: list[TileStats],
    painted: list[float],
    forwarded: list[TileStats] | None = None,
) -> Tally:
    """Sum the reports of a group of tasks (a dense network's forward tasks count as
    segmentation)."""
    work = [*segmented, *(forwarded or [])]
    stages = [float(sum(v)) for v in zip(*(s.stages for s in work), strict=True)]
    return Tally(
        ingest_s=float(sum(ingested)),
        segment_s=float(sum(s.seconds for s in work)),
        stages=tuple(stages) or (0.0,) * len(SEGMENT_STAGES),
        paint_s=float(sum(painted)),
        reused=sum(s.reused for s in segmented),
    )


def finalize_slide(plan: SlidePlan, tallies: list[Tally]) -> SlideResult:
    """Assemble the slide's table, label pyramid (and image) and move them into place;
    ``tallies`` are the slide's summed task reports (:func:`tally_tasks`).

    The label pyramid is built in scratch, then the table is written (atomically), then the
    labels are moved: a failure before the move leaves the scratch for the retry. Both carry
    the settings key, which :func:`finished_with` checks.

    Idempotent: when a retry finds the outputs of this very run (same settings key) already in
    place and the scratch gone, it reports them instead of failing on the missing fragments.
    """
    t0 = time.perf_counter()
    out = Path(plan.out)
    final = nuclei_path(out, plan.slide_id)
    labels = labels_path(out, plan.slide_id)
    total = sum(tallies, Tally())
    if not plan.fragments.exists() and finished_with(final, labels, plan.key):
        n = pq.read_metadata(final).num_rows
        flags = tuple(json.loads(read_metadata(final).get("summary", "{}")).get("qc_flags", []))
        return _slide_result(plan, total, n, 0.0, flags)
    frags = [plan.fragments / f"{_stem(r, c)}.parquet" for r, c in plan.tiles]
    summary, bbox = summarize(frags, plan.modality, plan.tissue_mm2)
    finish_label_image(plan.labels_store, plan.choice.mpp, _image_source(plan))
    meta = {
        **provenance(plan),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": json.dumps(summary, sort_keys=True),
    }
    n = write_nuclei(final, (pq.read_table(f) for f in frags), meta, bbox)
    if plan.features == "full":
        # written before each tile's nucleus fragment, so present wherever that one is
        _write_features_table(plan, final, [f.with_suffix(".full.parquet") for f in frags])
    replace_dir(plan.labels_store, labels)
    shutil.rmtree(plan.fragments, ignore_errors=True)
    write_s = time.perf_counter() - t0
    return _slide_result(plan, total, n, write_s, tuple(summary["qc_flags"]))


def _slide_result(
    plan: SlidePlan, total: Tally, nuclei: int, write_s: float, flags: tuple[str, ...]
) -> SlideResult:
    return SlideResult(
        plan.slide_id, nuclei, ingest_s=total.ingest_s, segment_s=total.segment_s,
        write_s=write_s, tiles_reused=total.reused, stages=total.stages,
        paint_s=total.paint_s, qc_flags=flags,
    )  # fmt: skip


def _image_source(plan: SlidePlan) -> str | None:
    """With ``save_image``, write the analysed image as OME-Zarr and return its path relative
    to the label image; otherwise None."""
    if not plan.save_image:
        return None
    staged = plan.fragments / "image.zarr"
    write_image(
        staged, zarr.open_array(str(plan.tile_store), mode="r"), plan.choice.mpp, plan.slide_id
    )
    replace_dir(staged, image_path(Path(plan.out), plan.slide_id))
    return f"../../images/{plan.slide_id}.zarr"


def provenance(plan: SlidePlan) -> dict[str, str]:
    """Key-value metadata of the slide's Parquet file (prefixed ``nucscale.`` on disk): the
    nucscale version, the source, the pixel sizes, tile and halo, the model and its weights
    hash, the command line and start time (``plan.provenance``)."""
    return {
        "version": __version__,
        "slide_id": plan.slide_id,
        "source": Path(plan.path).name,
        "backend": plan.backend,
        "settings_key": plan.key,
        "mpp": f"{plan.choice.mpp:.6g}",
        "mpp_level0": f"{plan.mpp0:.6g}",
        "level": str(plan.choice.level),
        "resample_factor": f"{plan.choice.factor:.6g}",
        "tile_size": str(plan.grid.tile),
        "halo": str(plan.grid.halo),
        "tissue_mm2": f"{plan.tissue_mm2:.6g}",
        "features": plan.features,
        **dict(plan.provenance),
    }


def finished_with(table: Path, labels: Path, key: str) -> bool:
    """Whether ``table`` and ``labels`` exist and were both written by a run with settings
    ``key``."""
    if not (table.exists() and (labels / "zarr.json").exists()):
        return False
    try:
        attrs = zarr.open_group(str(labels), mode="r").attrs.get("nucscale")
        labels_key = attrs.get("settings_key") if isinstance(attrs, dict) else None
        return read_metadata(table).get("settings_key") == key == labels_key
    except (OSError, ValueError, KeyError, pa.ArrowInvalid):
        return False
