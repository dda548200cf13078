"""A contact sheet of suggested nuclei: a crop of the slide around each, its outline, and the
rank, slide and nucleus id a person writes the label against (``labels-template.csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from PIL import Image, ImageDraw

from nucscale.io import open_slide
from nucscale.io._options import options_of
from nucscale.report._pictures import draw_outlines, png_bytes
from nucscale.store import nuclei_path, read_manifest, read_metadata

#: Side of each crop on the slide (µm) and on the sheet (px); crops per row.
CROP_UM = 24.0
CELL_PX = 128
COLUMNS = 8
_CAPTION = 30
_OUTLINE = (0, 200, 60)


def contact_sheet(out: Path, chosen: pd.DataFrame) -> bytes:
    """PNG of the nuclei ``chosen`` (columns ``rank``, ``slide_id``, ``nucleus_id``), in rank
    order, each crop centred on its nucleus."""
    paths = {r.slide_id: r.path for r in read_manifest(out).values()}
    tiles: list[tuple[int, np.ndarray, str]] = []  # (rank, crop, caption)
    for sid, group in chosen.groupby("slide_id", sort=False):
        crops = _slide_crops(out, str(sid), paths.get(str(sid), ""), group)
        for (rank, nid), crop in zip(
            group[["rank", "nucleus_id"]].itertuples(index=False), crops, strict=True
        ):
            tiles.append((int(rank), crop, f"#{rank}  {sid[:14]}\nid {nid}"))
    tiles.sort(key=lambda t: t[0])
    rows = max(1, -(-len(tiles) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * CELL_PX, rows * (CELL_PX + _CAPTION)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for slot, (_, crop, caption) in enumerate(tiles):
        x, y = (slot % COLUMNS) * CELL_PX, (slot // COLUMNS) * (CELL_PX + _CAPTION)
        sheet.paste(Image.fromarray(crop), (x, y))
        draw.text((x + 3, y + CELL_PX + 2), caption, fill=(0, 0, 0))
    return png_bytes(np.asarray(sheet))


def _slide_crops(out: Path, slide_id: str, path: str, group: pd.DataFrame) -> list[np.ndarray]:
    """The crops of one slide's suggested nuclei (grey squares when the slide cannot be read:
    the ids still tell which nucleus is meant)."""
    table_path = nuclei_path(out, slide_id)
    meta = read_metadata(table_path)
    ids = pa.array(group["nucleus_id"].to_numpy(dtype=np.int64))
    table = pq.read_table(
        table_path, columns=["nucleus_id", "centroid_x", "centroid_y", "geometry"]
    )
    table = table.filter(pc.is_in(table.column("nucleus_id"), value_set=ids))
    at = {nid: i for i, nid in enumerate(table.column("nucleus_id").to_pylist())}
    mpp0 = float(meta.get("mpp_level0", "0") or 0) or None
    blank = np.full((CELL_PX, CELL_PX, 3), 200, np.uint8)
    try:
        slide = open_slide(path, mpp=mpp0, options=options_of(meta))
    except Exception:  # a moved or unreadable slide: ids only
        return [blank for _ in range(len(group))]
    crops = []
    with slide:
        side = max(8, round(CROP_UM / (mpp0 or slide.mpp or 0.5)))
        w, h = slide.level_dimensions[0]
        polys = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
        for nid in group["nucleus_id"].tolist():
            i = at[int(nid)]
            cx, cy = table.column("centroid_x")[i].as_py(), table.column("centroid_y")[i].as_py()
            x0 = int(min(max(round(cx - side / 2), 0), max(w - side, 0)))
            y0 = int(min(max(round(cy - side / 2), 0), max(h - side, 0)))
            rgb = slide.read_region(0, x0, y0, min(side, w), min(side, h))[..., :3]
            scale = CELL_PX / side
            big = np.asarray(
                Image.fromarray(rgb).resize((CELL_PX, CELL_PX), Image.Resampling.LANCZOS)
            )
            crops.append(draw_outlines(big, [polys[i]], [_OUTLINE], origin=(x0, y0), scale=scale))
    return crops
