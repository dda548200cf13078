"""The cohort QC page: static HTML, inline CSS, pictures referenced beside it; no scripts."""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from nucscale.models._types import RGB
from nucscale.report._build import HIST_FEATURES, SlidePictures

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.failed { color: #b00020; } .done { color: #146c2e; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
          margin-right: 6px; vertical-align: -1px; }
.slide { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.slide figure { margin: 0; } .slide img { border: 1px solid #ccc; max-width: 1288px; }
figcaption { font-size: 12px; color: #555; } .hists img { margin-right: 12px; }
"""


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and digits == 0):
        return f"{int(value):,}"
    return f"{float(value):,.{digits}f}"


def _count(n: int, one: str, many: str | None = None) -> str:
    """``"1 slide"``, ``"2 slides"``, ``"1,024 nuclei"``."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _swatch(colour: RGB) -> str:
    r, g, b = colour
    return f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>'


def _slide_table(table: pd.DataFrame) -> str:
    head = (
        '<tr><th class="l">slide</th><th class="l">status</th><th>nuclei</th><th>tissue mm²</th>'
        "<th>nuclei / mm²</th><th>median area µm²</th><th>median eq. diameter µm</th>"
        '<th>µm/px</th><th class="l">segmenter</th><th>seconds</th><th class="l">QC</th>'
        '<th class="l">error</th></tr>'
    )
    rows = []
    for r in table.itertuples():
        link = (
            f'<a href="#{_e(r.slide_id)}">{_e(r.slide_id)}</a>'
            if r.status == "done"
            else _e(r.slide_id)
        )
        rows.append(
            f'<tr><td class="l">{link}</td><td class="l {_e(r.status)}">{_e(r.status)}</td>'
            f"<td>{_num(r.nuclei, 0)}</td><td>{_num(r.tissue_mm2, 3)}</td>"
            f"<td>{_num(r.nuclei_per_mm2, 0)}</td><td>{_num(r.median_area, 1)}</td>"
            f"<td>{_num(r.median_equivalent_diameter, 2)}</td><td>{_num(r.mpp, 3)}</td>"
            f'<td class="l">{_e(r.segmenter)}</td><td>{_num(r.wall_s, 1)}</td>'
            f'<td class="l">{_qc_cell(r)}</td>'
            f'<td class="l">{_e(r.error)}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _flags(row: Any) -> list[str]:
    flags = getattr(row, "qc_flags", None)
    return [] if flags is None or (isinstance(flags, float) and math.isnan(flags)) else list(flags)


def _qc_cell(row: Any) -> str:
    if row.status != "done":
        return ""
    flags = _flags(row)
    if not flags:
        return '<span class="done">ok</span>'
    return f'<span class="failed">{len(flags)} flag{"s" if len(flags) > 1 else ""}</span>'


def _type_table(by_type: list[tuple], colours: dict[str, RGB]) -> str:
    head = (
        '<tr><th class="l">slide</th><th class="l">type</th><th>nuclei</th><th>share</th>'
        "<th>median area µm²</th><th>median convex area µm²</th>"
        "<th>median eq. diameter µm</th></tr>"
    )
    totals: dict[str, int] = {}
    for sid, _, n, *_ in by_type:
        totals[sid] = totals.get(sid, 0) + n
    rows = []
    for sid, name, n, area, convex, diameter in by_type:
        share = n / totals[sid] if totals[sid] else 0.0
        rows.append(
            f'<tr><td class="l">{_e(sid)}</td>'
            f'<td class="l">{_swatch(colours.get(name, (128, 128, 128)))}{_e(name)}</td>'
            f"<td>{_num(n, 0)}</td><td>{share:.1%}</td><td>{_num(area, 1)}</td>"
            f"<td>{_num(convex, 1)}</td><td>{_num(diameter, 2)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _class_table(pictures: dict[str, SlidePictures]) -> str:
    """Nuclei per cell class of each slide with classes, and the model that gave them."""
    head = (
        '<tr><th class="l">slide</th><th class="l">class</th><th>nuclei</th><th>share</th>'
        '<th>mean probability of the class</th><th class="l">model SHA-256</th></tr>'
    )
    rows = []
    for sid, pics in pictures.items():
        total = sum(n for _, n, _ in pics.classes)
        for name, n, p in pics.classes:
            share = n / total if total else 0.0
            rows.append(
                f'<tr><td class="l">{_e(sid)}</td>'
                f'<td class="l">{_swatch(pics.class_colours[name])}{_e(name)}</td>'
                f"<td>{_num(n, 0)}</td><td>{share:.1%}</td><td>{p:.3f}</td>"
                f'<td class="l"><code>{_e((pics.model_sha256 or "")[:12])}</code></td></tr>'
            )
    return f"<table>{head}{''.join(rows)}</table>"


def _slide_section(row: Any, pics: SlidePictures) -> str:
    parts = [f'<h3 id="{_e(row.slide_id)}">{_e(row.slide_id)}</h3>']
    parts.append(
        f"<p>{_num(row.nuclei, 0)} nuclei, {_num(row.tissue_mm2, 3)} mm² tissue, "
        f"{_num(row.nuclei_per_mm2, 0)} nuclei / mm² &middot; {_e(row.vendor)} "
        f"{_num(row.mpp, 3)} µm/px &middot; <code>{_e(row.path)}</code></p>"
    )
    flags = _flags(row)
    if flags:
        items = "".join(f"<li>{_e(f)}</li>" for f in flags)
        parts.append(
            f'<div class="failed"><b>QC: this result looks implausible; look at the pictures '
            f"before using its numbers.</b><ul>{items}</ul></div>"
        )
    if pics.problem:
        parts.append(f'<p class="failed">no pictures: {_e(pics.problem)}</p>')
    figures = []
    by = "cell class" if pics.by_class else "type"
    if pics.thumb:
        figures.append(
            f'<figure><img src="{_e(pics.thumb)}" alt="thumbnail of {_e(row.slide_id)}">'
            f"<figcaption>whole slide: tissue outline (green), nuclei coloured by {by}"
            "</figcaption></figure>"
        )
    if pics.zoom and pics.zoom_box:
        x0, y0, x1, y1 = pics.zoom_box
        figures.append(
            f'<figure><img src="{_e(pics.zoom)}" alt="full-resolution crop of {_e(row.slide_id)}">'
            f"<figcaption>densest tile at full resolution (level-0 px x {x0}..{x1}, "
            f"y {y0}..{y1}): the image, and its nuclei outlined by {by}</figcaption></figure>"
        )
    if pics.suspect and pics.suspect_box:
        x0, y0, x1, y1 = pics.suspect_box
        figures.append(
            f'<figure><img src="{_e(pics.suspect)}" alt="least plausible region of '
            f'{_e(row.slide_id)}"><figcaption>the tile where most objects look implausible '
            f"({pics.suspect_share:.0%} tiny, eosin-dominant or on glass; x {x0}..{x1}, "
            f"y {y0}..{y1}): the image, and its nuclei outlined by {by}</figcaption></figure>"
        )
    parts.append(f'<div class="slide">{"".join(figures)}</div>')
    return "".join(parts)


def render_page(
    table: pd.DataFrame,
    pictures: dict[str, SlidePictures],
    by_type: list[tuple],
    hists: dict[str, str],
    colours: dict[str, RGB],
    info: dict[str, Any],
    classes: dict[str, RGB] | None = None,
) -> str:
    """The whole page as one HTML string; ``classes`` (cell class -> colour) adds the cell
    class section where slides have classes."""
    done = int((table["status"] == "done").sum())
    failed = len(table) - done
    total = int(table["nuclei"].fillna(0).sum())
    legend = " ".join(f"{_swatch(c)}{_e(n)}" for n, c in sorted(colours.items()))
    hist_imgs = "".join(
        f'<img src="{_e(png)}" alt="{_e(HIST_FEATURES[f])} by type">' for f, png in hists.items()
    )
    with_classes = {s: p for s, p in pictures.items() if p.classes}
    class_part = ""
    if with_classes:
        class_legend = " ".join(f"{_swatch(c)}{_e(n)}" for n, c in (classes or {}).items())
        class_part = (
            "<h2>Cell classes</h2>\n<p>From <code>nucscale classify predict</code>; the "
            "pictures of these slides colour nuclei by class: "
            f"{class_legend}</p>\n{_class_table(with_classes)}"
        )
    sections = "".join(
        _slide_section(r, pictures[r.slide_id])
        for r in table.itertuples()
        if r.slide_id in pictures
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>nucscale QC report</title><style>{_CSS}</style></head><body>
<h1>nucscale QC report</h1>
<p>{_count(len(table), "slide")}: <span class="done">{done} done</span>,
<span class="failed">{failed} failed</span>; {_count(total, "nucleus", "nuclei")}.
Results <code>{_e(info["out"])}</code>, nucscale {_e(info["version"])},
generated {_e(info["generated"])}.</p>
<p>Types: {legend}</p>
<h2>Slides</h2>
{_slide_table(table)}
<h2>Nuclei per type</h2>
{_type_table(by_type, colours)}
{class_part}
<h2>Feature distributions by type</h2>
<p>All slides together; x axis up to the 99.5th percentile.</p>
<div class="hists">{hist_imgs}</div>
<h2>Per slide</h2>
{sections}
</body></html>
"""
