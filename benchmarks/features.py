"""Benchmark: `nucscale.features.measure` vs scikit-image regionprops_table; one JSON line.

~2,000 seeded ellipses in a 1024 x 1024 window (a dense tile). nucscale's ``measure`` computes
every column of the nucleus table (morphology, intensity, position and the WKB outline);
``regionprops_table`` is timed with the 15 HoVer-Net morphology measures only (the issue's
comparison, target >= 10x) and with everything it can give of ours.

    python benchmarks/features.py
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
from skimage.draw import ellipse
from skimage.measure import regionprops_table

from nucscale.features import measure

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
    runs = {}
    t0 = time.perf_counter()
    measure(labels, rgb, ids, mpp=0.5)
    runs["nucscale_measure_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    regionprops_table(labels, properties=MORPHOLOGY_15)
    runs["regionprops_morphology15_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    regionprops_table(labels, intensity_image=rgb, properties=PROPS)
    runs["regionprops_all_s"] = time.perf_counter() - t0
    n = int(ids.size)
    speedup = runs["regionprops_morphology15_s"] / runs["nucscale_measure_s"]
    print(
        json.dumps(
            {
                "name": "features",
                "params": {"nuclei": n, "window_px": 1024, "threads": 1},
                **{k: round(v, 3) for k, v in runs.items()},
                "nucscale_nuclei_per_s": round(n / runs["nucscale_measure_s"]),
                "regionprops_morphology15_nuclei_per_s": round(
                    n / runs["regionprops_morphology15_s"]
                ),
                "speedup_vs_morphology15": round(speedup, 2),
                "speedup_vs_all": round(runs["regionprops_all_s"] / runs["nucscale_measure_s"], 2),
                "target_speedup": 10,
                "target_met": speedup >= 10,
            }
        )
    )


if __name__ == "__main__":
    main()
