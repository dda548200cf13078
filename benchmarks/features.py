"""Benchmark: `nucscale.features.measure` vs scikit-image regionprops_table; one JSON line.

~2,000 seeded ellipses in a 1024 x 1024 window (a dense tile), best of 3 after a warm-up. The
issue's comparison (target >= 10x): ``nucscale.features.morphology`` vs ``regionprops_table``
with the same 15 HoVer-Net morphology measures. Also timed: nucscale's ``measure``, every
column of the nucleus table (morphology, intensity, position and the WKB outline), vs
``regionprops_table`` with everything it can give of those; and ``--features full``'s window
families (CellProfiler-style intensity, Haralick texture, shape with Feret diameters and
Zernike moments) on top of it (target: the table plus the families >= 2,000 nuclei/s on one
core). The shape family is also timed alone, next to the per-nucleus references for its new
columns: ``regionprops_table`` ``feret_diameter_max`` and mahotas ``zernike_moments`` (degree 9,
one call per nucleus on its cropped mask, crops made beforehand).

    python benchmarks/features.py
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import mahotas
import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.measure import regionprops_table

from nucscale.features import measure, morphology
from nucscale.features._cellprofiler import shape_family, window_columns
from nucscale.features._zernike import DEGREE

REPEATS = 3

PROPS = (
    "label",
    "area",
    "area_bbox",
    "area_convex",
    "area_filled",
    "perimeter",
    "equivalent_diameter_area",
    "axis_major_length",
    "axis_minor_length",
    "eccentricity",
    "orientation",
    "extent",
    "solidity",
    "euler_number",
    "inertia_tensor_eigvals",
    "centroid",
    "bbox",
    "intensity_mean",
    "intensity_std",
)


#: The 15 HoVer-Net morphology measures (regionprops names), the issue's comparison.
MORPHOLOGY_15 = (
    "area", "area_bbox", "area_convex", "area_filled", "perimeter", "equivalent_diameter_area",
    "axis_major_length", "axis_minor_length", "eccentricity", "orientation", "extent",
    "solidity", "euler_number", "inertia_tensor_eigvals",
)  # fmt: skip


def main() -> None:
    rng = np.random.default_rng(7)
    labels = np.zeros((1024, 1024), dtype=np.int32)
    for n in range(1, 2001):
        r, c = rng.uniform(10, 1014, size=2)
        a, b = rng.uniform(4, 10, size=2)
        rr, cc = ellipse(r, c, a, b, shape=labels.shape, rotation=rng.uniform(0, math.pi))
        labels[rr, cc] = n
    rgb = rng.integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8)
    ids = np.unique(labels[labels > 0])
    ones = np.ones(ids.size)
    crops = _crops(labels, ids)
    jobs = {
        # --features full: the window families (intensity, texture, shape) on top of measure
        "nucscale_full_families_s": lambda: window_columns(
            labels, rgb, ids, modality="brightfield", mpp=0.5, area=ones, perimeter=ones
        ),
        # of which the shape family: form factor, compactness, Feret diameters, Zernike moments
        "nucscale_shape_family_s": lambda: shape_family(labels, ids, ones, ones, mpp=0.5),
        "regionprops_feret_max_s": lambda: regionprops_table(
            labels, properties=("feret_diameter_max",)
        ),
        "mahotas_zernike_s": lambda: [
            mahotas.features.zernike_moments(mask, radius, DEGREE, cm=cm)
            for mask, radius, cm in crops
        ],
        "nucscale_morphology15_s": lambda: morphology(labels, ids),
        "nucscale_measure_s": lambda: measure(labels, rgb, ids, mpp=0.5),
        "regionprops_morphology15_s": lambda: regionprops_table(labels, properties=MORPHOLOGY_15),
        "regionprops_all_s": lambda: regionprops_table(
            labels, intensity_image=rgb, properties=PROPS
        ),
    }
    runs = {name: _best_of(job, REPEATS) for name, job in jobs.items()}
    n = int(ids.size)
    speedup = runs["regionprops_morphology15_s"] / runs["nucscale_morphology15_s"]
    full = n / (runs["nucscale_measure_s"] + runs["nucscale_full_families_s"])
    print(
        json.dumps(
            {
                "name": "features",
                "params": {"nuclei": n, "window_px": 1024, "threads": 1, "best_of": REPEATS},
                **{k: round(v, 3) for k, v in runs.items()},
                "nucscale_morphology15_nuclei_per_s": round(n / runs["nucscale_morphology15_s"]),
                "nucscale_measure_nuclei_per_s": round(n / runs["nucscale_measure_s"]),
                # the nucleus table plus the full families (target: 2,000 nuclei/s/core)
                "nucscale_full_nuclei_per_s": round(full),
                "target_full_nuclei_per_s": 2000,
                "full_target_met": full >= 2000,
                "regionprops_morphology15_nuclei_per_s": round(
                    n / runs["regionprops_morphology15_s"]
                ),
                # the target: the same 15 measures on the same labels
                "speedup_morphology15": round(speedup, 2),
                # all 38 columns (outline, intensities, position too) vs all regionprops can give
                "speedup_table_vs_regionprops_all": round(
                    runs["regionprops_all_s"] / runs["nucscale_measure_s"], 2
                ),
                "target_speedup": 10,
                "target_met": speedup >= 10,
            }
        )
    )


def _crops(labels: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, float, tuple]]:
    """Per nucleus: its mask cropped to its bounding box, the Zernike disc's radius (largest
    centroid-to-pixel distance, grown by 1e-12 so no pixel is dropped) and the centroid."""
    out = []
    boxes = ndi.find_objects(labels)
    for i in ids:
        mask = (labels[boxes[i - 1]] == i).astype(np.uint8)
        rr, cc = np.nonzero(mask)
        cm = (rr.mean(), cc.mean())
        radius = math.sqrt(((rr - cm[0]) ** 2 + (cc - cm[1]) ** 2).max()) or 1.0
        out.append((mask, radius * (1 + 1e-12), cm))
    return out


def _best_of(job: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls (after one warm-up call)."""
    job()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        job()
        times.append(time.perf_counter() - t0)
    return min(times)


if __name__ == "__main__":
    main()
