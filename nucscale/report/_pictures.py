"""QC pictures: a slide thumbnail with its tissue outline and nuclei, a full-resolution crop,
and per-type feature histograms. Pure functions from arrays to arrays (or PNG bytes).

Outlines are drawn with Pillow's ``ImageDraw`` from the nucleus polygons (level-0 pixels), scaled
to the picture; on a thumbnail a nucleus is a few pixels, so it shows as a coloured dot.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import shapely
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from nucscale.models._types import RGB

TISSUE_COLOUR: RGB = (20, 180, 60)


def draw_outlines(
    rgb: np.ndarray,
    polygons: Sequence[shapely.Geometry] | np.ndarray,
    colours: Sequence[RGB],
    *,
    origin: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    width: int = 1,
) -> np.ndarray:
    """Copy of ``rgb`` with each polygon's exterior drawn in its colour.

    A polygon point (x, y) in level-0 pixels lands at ((x - origin_x) * scale, (y - origin_y) *
    scale) in the picture; ``scale`` is picture pixels per level-0 pixel.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3].astype(np.uint8)))
    draw = ImageDraw.Draw(img)
    ox, oy = origin
    for geom, colour in zip(polygons, colours, strict=True):
        if geom is None or shapely.is_empty(geom):
            continue
        for poly in shapely.get_parts(geom):  # a MultiPolygon's pieces, or the polygon
            xy = (shapely.get_coordinates(poly.exterior) - (ox, oy)) * scale
            points = [tuple(p) for p in xy.tolist()]
            if len(points) < 3 or np.ptp(xy, axis=0).max() < 1.5:  # a dot at this scale
                cx, cy = xy.mean(axis=0)
                draw.rectangle([cx - 0.5, cy - 0.5, cx + 0.5, cy + 0.5], fill=colour)
            else:
                draw.line([*points, points[0]], fill=colour, width=width)
    return np.asarray(img)


def draw_mask_outline(rgb: np.ndarray, mask: np.ndarray, colour: RGB = TISSUE_COLOUR) -> np.ndarray:
    """Copy of ``rgb`` with the boundary of ``mask`` (same height and width) drawn 2 px wide."""
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {rgb.shape[:2]} differ in size")
    edge = mask & ~ndi.binary_erosion(mask, iterations=2)
    out = rgb[..., :3].astype(np.uint8).copy()
    out[edge] = colour
    return out


def resize_to(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``rgb`` shrunk so its longest side is at most ``max_side`` (area filter), and the factor."""
    h, w = rgb.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f == 1.0:
        return rgb, 1.0
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX)), f


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``shape`` (h, w)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (shape[1], shape[0]), Image.Resampling.NEAREST
    )
    return np.asarray(img) > 127


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def histogram_png(
    edges: np.ndarray,
    counts: Mapping[str, np.ndarray],
    colours: Mapping[str, RGB],
    *,
    totals: Mapping[str, int],
    xlabel: str,
    title: str,
) -> bytes:
    """Density histograms (one step line per type) on shared ``edges``, as PNG bytes;
    ``totals`` are the nuclei per type (the legend's n, including those beyond the x range)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    width = np.diff(edges)
    for name, c in counts.items():
        total = c.sum()
        if total == 0:
            continue
        density = c / (total * width)
        colour = np.array(colours[name], float) / 255
        if colour @ [0.299, 0.587, 0.114] > 0.7:  # too light on white: darken
            colour = colour * 0.75
        n = totals.get(name, int(total))
        ax.stairs(density, edges, label=f"{name} (n={n:,})", color=tuple(colour), linewidth=1.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
