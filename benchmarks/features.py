"""Benchmark: `nucscale.features.measure` vs scikit-image regionprops_table; one JSON line.

~2,000 seeded ellipses in a 1024 x 1024 window (a dense tile), same columns both ways.

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
    "label", "area", "area_bbox", "area_convex", "area_filled", "perimeter",
    "equivalent_diameter_area", "axis_major_length", "axis_minor_length", "eccentricity",
    "orientation", "extent", "solidity", "euler_number", "inertia_tensor_eigvals",
    "centroid", "bbox", "intensity_mean", "intensity_std",
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
    t0 = time.perf_counter()
    measure(labels, rgb, ids, mpp=0.5)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    regionprops_table(labels, intensity_image=rgb, properties=PROPS)
    ref = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "benchmark": "features",
                "nuclei": int(ids.size),
                "window_px": 1024,
                "measure_s": round(ours, 3),
                "regionprops_table_s": round(ref, 3),
                "speedup": round(ref / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
