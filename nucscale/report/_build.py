"""``nucscale report OUT``: QC pictures per slide and one static HTML page per cohort.

Writes ``OUT/report/``: ``index.html`` (self-contained apart from the pictures beside it),
``<id>-thumb.png`` (the whole slide with its tissue outline and every nucleus coloured by type),
``<id>-zoom.png`` (a full-resolution crop around the densest tile, the image beside the same
image with outlines coloured by type), ``<id>-suspect.png`` (the same for the tile with the
largest share of implausible objects: tiny, eosin-dominant or on glass, see
:mod:`nucscale.analysis._qc`; a wrong model shows there at a glance), and
``hist-<feature>.png`` (per-type distributions of area, convex area and equivalent diameter,
as the HoVer-Net feature analysis shows them). A slide whose pictures cannot be made
(its file moved, say) gets a line saying why; the rest of the report is still written.

Where a slide has cell classes (``nucscale classify predict``, current for its nucleus table),
the page counts nuclei per class (with the mean probability of the class given) and the
slide's pictures colour each nucleus by its class instead of its segmenter type, in the colours
of the QuPath export (:func:`nucscale.store.class_colours`).

Aggregates come from DuckDB over the nucleus tables (counts and histograms are computed in SQL,
streaming), so the page for a cohort of millions of nuclei needs only the per-slide polygons
of the slide being drawn in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from nucscale import __version__
from nucscale.analysis._qc import GLASS_LEVEL, QC_COLUMNS, SMALL_AREA_UM2
from nucscale.io import open_slide
from nucscale.io._options import options_of
from nucscale.models._types import RGB, type_colour
from nucscale.query import Results
from nucscale.report._pictures import (
    draw_mask_outline,
    draw_outlines,
    histogram_png,
    png_bytes,
    resize_mask,
    resize_to,
)
from nucscale.store import (
    atomic_write,
    check_slide_id,
    class_colours,
    read_classes,
    read_metadata,
)
from nucscale.store._classes import CLASS, MODEL_HASH, class_names_of, prob_column
from nucscale.tiling import low_res_image, tissue_mask_for

log = logging.getLogger(__name__)

THUMB_SIDE = 1200
ZOOM_SIDE = 640  # level-0 px of the zoomed crop
TISSUE_MAX_SIZE = 2048  # as the pipeline's default tissue detection
HIST_FEATURES = {
    "area": "area (µm²)",
    "convex_area": "convex area (µm²)",
    "equivalent_diameter": "equivalent diameter (µm)",
}
HIST_BINS = 60


@dataclass
class SlidePictures:
    slide_id: str
    thumb: str | None = None
    zoom: str | None = None
    zoom_box: tuple[int, int, int, int] | None = None
    suspect: str | None = None
    suspect_box: tuple[int, int, int, int] | None = None
    suspect_share: float = 0.0
    problem: str | None = None
    colours: dict[str, RGB] = field(default_factory=dict)
    class_colours: dict[str, RGB] = field(default_factory=dict)
    classes: list[tuple[str, int, float]] = field(default_factory=list)  # class, n, mean p
    model_sha256: str | None = None

    @property
    def by_class(self) -> bool:
        """Whether the pictures colour nuclei by cell class (else by segmenter type)."""
        return bool(self.class_colours)


def _colours(table_path: Path) -> dict[str, RGB]:
    t = pq.read_table(table_path, columns=["type", "type_name"])
    pairs = t.group_by(["type_name", "type"]).aggregate([]).to_pylist()
    return {p["type_name"]: type_colour(p["type_name"], p["type"]) for p in pairs}


def _class_colours_of(
    res: Results, slide_id: str, pics: SlidePictures, nucleus_ids: list[int]
) -> list[RGB] | None:
    """The class colour of each nucleus (in ``nucleus_ids`` order) when the slide has current
    classes, filling in ``pics``' class fields; None otherwise."""
    classes = read_classes(res.out, slide_id)
    if classes is None:
        return None
    names = class_names_of(classes)
    pics.class_colours = class_colours(names)
    given = classes.column(CLASS).to_pylist()
    probs = np.stack([classes.column(prob_column(n)).to_numpy() for n in names], axis=1)
    chosen = probs.max(axis=1) if len(given) else np.zeros(0)
    given_array = np.asarray(given, dtype=object)
    for name in names:
        mask = given_array == name
        if mask.any():
            pics.classes.append((name, int(mask.sum()), float(chosen[mask].mean())))
    hashes = classes.column(MODEL_HASH).unique().to_pylist()
    pics.model_sha256 = hashes[0] if hashes else None
    by_id = dict(zip(classes.column("nucleus_id").to_pylist(), given, strict=True))
    grey: RGB = (128, 128, 128)
    return [pics.class_colours.get(by_id.get(nid, ""), grey) for nid in nucleus_ids]


def _densest_box(table_path: Path, mpp0_side: int) -> tuple[int, int, int, int] | None:
    """A ``mpp0_side``-wide box (level-0 px) centred on the median centroid of the tile with
    the most nuclei."""
    t = pq.read_table(table_path, columns=["tile_row", "tile_col", "centroid_x", "centroid_y"])
    if t.num_rows == 0:
        return None
    counts = t.group_by(["tile_row", "tile_col"]).aggregate([("centroid_x", "count")])
    best = counts.sort_by([("centroid_x_count", "descending")]).slice(0, 1).to_pylist()[0]
    mask = pc.and_(
        pc.equal(t.column("tile_row"), best["tile_row"]),
        pc.equal(t.column("tile_col"), best["tile_col"]),
    )
    sub = t.filter(mask)
    cx = float(np.median(sub.column("centroid_x").to_numpy()))
    cy = float(np.median(sub.column("centroid_y").to_numpy()))
    x0, y0 = round(cx - mpp0_side / 2), round(cy - mpp0_side / 2)
    return (x0, y0, x0 + mpp0_side, y0 + mpp0_side)


def _suspect_box(
    table_path: Path, mpp0_side: int, modality: str
) -> tuple[tuple[int, int, int, int], float] | None:
    """A ``mpp0_side``-wide box centred on the implausible objects of the tile (>= 10 nuclei)
    where they are the largest share, and that share; None when no object is implausible."""
    cols = ["tile_row", "tile_col", "centroid_x", "centroid_y", *QC_COLUMNS]
    t = pq.read_table(table_path, columns=cols)
    if t.num_rows == 0:
        return None
    area = t.column("area").to_numpy()
    bad = area < SMALL_AREA_UM2
    if modality != "fluorescence":
        h, e = (t.column(c).to_numpy() for c in ("od_haematoxylin", "od_eosin"))
        rgb = np.stack([t.column(c).to_numpy() for c in ("mean_r", "mean_g", "mean_b")])
        bad |= (h < e) | (rgb > GLASS_LEVEL).all(axis=0)
    if not bad.any():
        return None
    tiles = t.column("tile_row").to_numpy().astype(np.int64) * (1 << 20) + t.column(
        "tile_col"
    ).to_numpy().astype(np.int64)
    _, inverse, counts = np.unique(tiles, return_inverse=True, return_counts=True)
    share = np.bincount(inverse, weights=bad.astype(np.float64)) / counts
    share[counts < 10] = -1.0
    best = int(np.argmax(share)) if share.max() >= 0 else int(np.argmax(counts))
    pick = (inverse == best) & bad
    if not pick.any():
        return None
    cx = float(np.median(t.column("centroid_x").to_numpy()[pick]))
    cy = float(np.median(t.column("centroid_y").to_numpy()[pick]))
    x0, y0 = round(cx - mpp0_side / 2), round(cy - mpp0_side / 2)
    return (x0, y0, x0 + mpp0_side, y0 + mpp0_side), float(max(share[best], 0.0))


def _inside(box: Any, size: tuple[int, int]) -> Any:
    """``box`` (x0, y0, x1, y1) shifted to lie inside an image of ``size`` (w, h) where it fits."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    w, h = size
    dx = max(0, -x0) if x1 - x0 > w else max(-x0, min(0, w - x1))
    dy = max(0, -y0) if y1 - y0 > h else max(-y0, min(0, h - y1))
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


def _side_by_side(
    slide: Any, box: tuple[int, int, int, int], polys: np.ndarray, colours: list[RGB]
) -> bytes:
    """PNG of the crop ``box`` (level-0 px) beside the same crop with outlines drawn."""
    x0, y0, x1, y1 = box
    crop = slide.read_region(0, x0, y0, x1 - x0, y1 - y0)
    near = shapely.intersects(polys, shapely.box(x0, y0, x1, y1))
    drawn = draw_outlines(
        crop,
        polys[near],
        [c for c, k in zip(colours, near, strict=True) if k],
        origin=(x0, y0),
        width=2,
    )
    gap = np.full((crop.shape[0], 8, 3), 255, np.uint8)
    return png_bytes(np.concatenate([crop[..., :3], gap, drawn], axis=1))


def slide_pictures(res: Results, slide_id: str, path: str, folder: Path) -> SlidePictures:
    """Thumbnail and zoomed crops of one finished slide, written into ``folder``, and its cell
    classes (counts, colours) when it has current ones."""
    pics = SlidePictures(slide_id)
    table_path = res.table_path(slide_id)
    pics.colours = _colours(table_path)
    meta = read_metadata(table_path)
    cols = ["geometry", "type_name"]
    ids = pq.read_table(table_path, columns=["nucleus_id"]).column("nucleus_id").to_pylist()
    by_class = _class_colours_of(res, slide_id, pics, ids)
    try:
        mpp0 = float(meta.get("mpp_level0", "0")) or None
        with open_slide(path, mpp=mpp0, options=options_of(meta)) as slide:
            thumb, ds = low_res_image(slide, TISSUE_MAX_SIZE)
            mask = tissue_mask_for(thumb, meta.get("modality", "brightfield"))
            small, f = resize_to(thumb, THUMB_SIDE)
            picture = draw_mask_outline(small, resize_mask(mask, small.shape[:2]))
            table = pq.read_table(table_path, columns=cols)
            polys = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
            names = table.column("type_name").to_pylist()
            colours = by_class if by_class is not None else [pics.colours[n] for n in names]
            picture = draw_outlines(picture, polys, colours, scale=f / ds)
            pics.thumb = f"{slide_id}-thumb.png"
            _save(folder / pics.thumb, png_bytes(picture))
            box = _inside(_densest_box(table_path, ZOOM_SIDE), slide.level_dimensions[0])
            if box is not None:
                pics.zoom, pics.zoom_box = f"{slide_id}-zoom.png", box
                _save(folder / pics.zoom, _side_by_side(slide, box, polys, colours))
            modality = meta.get("modality", "brightfield")
            suspect = _suspect_box(table_path, ZOOM_SIDE, modality)
            if suspect is not None:
                suspect = (_inside(suspect[0], slide.level_dimensions[0]), suspect[1])
                pics.suspect_box, pics.suspect_share = suspect
                pics.suspect = f"{slide_id}-suspect.png"
                _save(folder / pics.suspect, _side_by_side(slide, suspect[0], polys, colours))
    except Exception as exc:  # one slide's pictures never stop the report
        pics.problem = (
            f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        log.warning("report: no pictures for %s (%s)", slide_id, pics.problem)
    return pics


def histograms(res: Results, folder: Path, colours: dict[str, RGB]) -> dict[str, str]:
    """Per-type histograms of :data:`HIST_FEATURES` over the whole cohort (binned in DuckDB,
    range 0 .. the 99.5th percentile); returns feature -> PNG file name."""
    out: dict[str, str] = {}
    totals = dict(res.sql("SELECT type_name, count(*) FROM nuclei GROUP BY ALL").fetchall())
    for feature, label in HIST_FEATURES.items():
        top = res.sql(f"SELECT quantile_cont({feature}, 0.995) FROM nuclei").fetchone()
        if top is None or top[0] is None or not top[0] > 0:
            continue
        hi = float(top[0])
        width = hi / HIST_BINS
        rows = res.sql(
            f"SELECT type_name, least(CAST(floor({feature} / {width!r}) AS BIGINT), "
            f"{HIST_BINS - 1}) AS bin, count(*) FROM nuclei WHERE {feature} <= {hi!r} "
            "GROUP BY ALL"
        ).fetchall()
        counts: dict[str, np.ndarray] = {}
        for name, b, n in rows:
            counts.setdefault(name, np.zeros(HIST_BINS, np.int64))[int(b)] += n
        edges = np.linspace(0.0, hi, HIST_BINS + 1)
        png = histogram_png(
            edges,
            dict(sorted(counts.items())),
            {n: colours.get(n, type_colour(n)) for n in counts},
            totals=totals,
            xlabel=label,
            title=f"{label.split(' (')[0]} by nucleus type",
        )
        name = f"hist-{feature}.png"
        _save(folder / name, png)
        out[feature] = name
    return out


def build_report(out: str | Path, slides: list[str] | None = None) -> Path:
    """Write ``OUT/report/index.html`` and its pictures; returns the page's path. ``slides``
    (ids checked by :func:`check_slide_id`) limits the per-slide part to those slides."""
    from nucscale.report._page import render_page

    for sid in slides or []:
        check_slide_id(sid, "slides")
    res = Results(out)
    _ = res.connection  # opens the views (and checks the manifest) before anything is written
    folder = res.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    table = res.slides()
    if slides is not None:
        table = table[table["slide_id"].isin(slides)]
    pictures: dict[str, SlidePictures] = {}
    colours: dict[str, RGB] = {}
    classes: dict[str, RGB] = {}
    for row in table.itertuples():
        if row.status == "done":
            pictures[row.slide_id] = slide_pictures(res, row.slide_id, row.path, folder)
            colours.update(pictures[row.slide_id].colours)
            classes.update(pictures[row.slide_id].class_colours)
    by_type = res.sql(
        "SELECT slide_id, type_name, count(*) AS n, median(area) AS median_area, "
        "median(convex_area) AS median_convex_area, "
        "median(equivalent_diameter) AS median_equivalent_diameter "
        "FROM nuclei GROUP BY ALL ORDER BY slide_id, type_name"
    ).fetchall()
    hists = histograms(res, folder, colours)
    info: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "out": str(res.out),
    }
    page = render_page(table, pictures, by_type, hists, colours, info, classes)
    index = folder / "index.html"
    _save(index, page.encode("utf-8"))
    res.close()
    return index


def _save(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)
