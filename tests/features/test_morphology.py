"""measure() against scikit-image regionprops_table: synthetic, hypothesis and real DSB labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.draw import disk, ellipse
from skimage.measure import regionprops_table

from nucscale.features import MEASURED_COLUMNS, MORPHOLOGY, NUCLEUS_SCHEMA, measure, morphology
from nucscale.features._convex import convex_areas
from nucscale.stitch import crop_to_content, owned_instances, owned_ranks
from nucscale.tiling import Box

#: Our column -> regionprops_table column, for the measures compared at mpp = 1, scale = 1.
REFERENCE = {
    "area": "area",
    "bbox_area": "area_bbox",
    "convex_area": "area_convex",
    "filled_area": "area_filled",
    "perimeter": "perimeter",
    "equivalent_diameter": "equivalent_diameter_area",
    "major_axis_length": "axis_major_length",
    "minor_axis_length": "axis_minor_length",
    "eccentricity": "eccentricity",
    "orientation": "orientation",
    "extent": "extent",
    "solidity": "solidity",
    "euler_number": "euler_number",
    "inertia_tensor_eigvals_0": "inertia_tensor_eigvals-0",
    "inertia_tensor_eigvals_1": "inertia_tensor_eigvals-1",
    "centroid_x": "centroid-1",
    "centroid_y": "centroid-0",
    "bbox_x0": "bbox-1",
    "bbox_y0": "bbox-0",
    "bbox_x1": "bbox-3",
    "bbox_y1": "bbox-2",
    "mean_r": "intensity_mean-0",
    "mean_g": "intensity_mean-1",
    "mean_b": "intensity_mean-2",
    "std_r": "intensity_std-0",
    "std_g": "intensity_std-1",
    "std_b": "intensity_std-2",
}
PROPERTIES = [
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
]


def reference(labels: np.ndarray, rgb: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """regionprops_table rows for ``ids`` (in that order), plus the mean H and E densities."""
    table = regionprops_table(labels, rgb, properties=PROPERTIES)
    row = {int(v): i for i, v in enumerate(table["label"])}
    order = np.array([row[int(i)] for i in ids], dtype=np.intp)
    out = {name: np.asarray(table[col])[order] for name, col in REFERENCE.items()}
    hed = rgb2hed(rgb)
    out["od_haematoxylin"] = np.asarray(ndi.mean(hed[..., 0], labels, ids))
    out["od_eosin"] = np.asarray(ndi.mean(hed[..., 1], labels, ids))
    return out


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Every reference column equal up to float rounding; orientation modulo pi."""
    for name, expected in want.items():
        actual = got[name].astype(np.float64)
        if name == "orientation":
            # +pi/2 and -pi/2 are the same axis; regionprops picks by rounding noise.
            actual = (actual - expected + math.pi / 2) % math.pi - math.pi / 2 + expected
        if got[name].dtype == np.float32:
            np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def ellipses() -> tuple[np.ndarray, np.ndarray]:
    """Seeded overlapping ellipses, a ring (hole), a ring around another nucleus, edge cuts."""
    rng = np.random.default_rng(20240611)
    labels = np.zeros((160, 200), dtype=np.int32)
    for n in range(1, 41):
        r, c = rng.uniform(0, 160), rng.uniform(0, 200)  # some cut by the window edge
        a, b = rng.uniform(2, 12, size=2)
        rr, cc = ellipse(r, c, a, b, shape=labels.shape, rotation=rng.uniform(0, math.pi))
        labels[rr, cc] = n
    ring = np.zeros_like(labels, dtype=bool)
    ring[disk((40, 40), 14, shape=labels.shape)] = True
    ring[disk((40, 40), 6, shape=labels.shape)] = False
    labels[ring] = 100
    labels[disk((40, 40), 3, shape=labels.shape)] = 101  # inside the hole of 100
    labels[120, 5] = 102  # a single pixel
    labels[150:152, 100:140] = 103  # a two-pixel-wide bar
    labels[0, 150:160] = 104  # one-pixel line on the top edge
    rgb = rng.integers(0, 256, size=(*labels.shape, 3), dtype=np.uint8)
    return labels, rgb


def test_synthetic_matches_regionprops(ellipses: tuple[np.ndarray, np.ndarray]) -> None:
    labels, rgb = ellipses
    ids = np.unique(labels[labels > 0])
    got = measure(labels, rgb, ids, mpp=1.0)
    want = reference(labels, rgb, ids)
    assert_matches(got, want)
    row = {int(v): i for i, v in enumerate(ids)}
    assert got["euler_number"][row[100]] == 0  # the ring has one hole
    assert got["filled_area"][row[100]] > got["area"][row[100]]


def test_intensity_does_not_depend_on_the_run_length(
    ellipses: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pixels summed in runs of 7 give the same float32 values, bit for bit, as in one run (the
    ~9,000 pixels here are under one default run): tables do not depend on tile content."""
    from nucscale.features import _intensity

    labels, rgb = ellipses
    ids = np.unique(labels[labels > 0])
    whole = measure(labels, rgb, ids, mpp=1.0)
    assert np.count_nonzero(labels) < _intensity._RUN
    monkeypatch.setattr(_intensity, "_RUN", 7)
    runs = measure(labels, rgb, ids, mpp=1.0)
    for name in _intensity.INTENSITY:
        np.testing.assert_array_equal(runs[name], whole[name], err_msg=name)


def test_morphology_alone_equals_regionprops(ellipses: tuple[np.ndarray, np.ndarray]) -> None:
    labels, rgb = ellipses
    ids = np.array([100, 3, 101, 104], dtype=np.int64)
    got = morphology(labels, ids)
    assert set(got) == set(MORPHOLOGY)
    want = reference(labels, rgb, ids)
    assert_matches(got, {name: want[name] for name in MORPHOLOGY})


def test_convex_areas_of_large_ragged_shapes() -> None:
    """Big, holed, many-piece and one-row shapes: the lock-step hulls equal Qhull's counts."""
    rng = np.random.default_rng(5)
    labels = np.zeros((420, 300), dtype=np.int32)
    labels[10:400, 20:280][rng.random((390, 260)) < 0.02] = 1  # sparse speckle, 390 rows
    labels[200:260, 100:200][rng.random((60, 100)) < 0.6] = 2
    labels[5, 10:290] = 3  # one row
    labels[50:350, 150] = 4  # one column
    ids = np.array([1, 2, 3, 4], dtype=np.int64)
    rows, cols = np.nonzero(labels)
    owner = np.searchsorted(ids, labels[rows, cols])
    order = np.argsort(owner, kind="stable")
    got = convex_areas(rows[order].astype(np.int64), cols[order].astype(np.int64), owner[order], 4)
    want = regionprops_table(labels, properties=["area_convex"])["area_convex"]
    np.testing.assert_array_equal(got, want)


def test_subset_in_given_order_ignores_other_labels(
    ellipses: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, rgb = ellipses
    ids = np.array([101, 7, 100, 3], dtype=np.int64)  # not sorted; 101 sits inside 100's hole
    got = measure(labels, rgb, ids, mpp=1.0)
    assert_matches(got, reference(labels, rgb, ids))
    alone = np.where(np.isin(labels, ids), labels, 0)
    assert_matches(got, reference(alone, rgb, ids))


def test_filled_areas_of_many_holed_shapes_on_several_shelves() -> None:
    """Speckled boxes (holes of every shape, diagonal gaps to the box edge, other nuclei in a
    hole), a box wider than the canvas's usual width and enough boxes for many shelves: each
    nucleus is filled as regionprops fills it alone."""
    rng = np.random.default_rng(11)
    labels = np.zeros((900, 2600), dtype=np.int32)
    n = 0
    for y in range(0, 860, 43):
        for x in range(0, 2560, 37):
            n += 1
            h, w = rng.integers(1, 40), rng.integers(1, 34)
            labels[y : y + h, x : x + w][rng.random((h, w)) < rng.uniform(0.5, 0.95)] = n
    ring = np.zeros_like(labels, dtype=bool)
    ring[disk((880, 1300), 19, shape=labels.shape)] = True
    ring[disk((880, 1300), 9, shape=labels.shape)] = False
    labels[860:, :][ring[860:, :]] = n + 1
    labels[disk((880, 1300), 4, shape=labels.shape)] = n + 2  # a nucleus in the ring's hole
    labels[865, 2:2590:2] = n + 3  # a dotted line wider than 2048 px
    labels[866, 3:2589:2] = n + 3
    ids = np.unique(labels[labels > 0])
    got = morphology(labels, ids)
    want = regionprops_table(labels, properties=["label", "area", "area_filled"])
    np.testing.assert_array_equal(want["label"], ids)
    np.testing.assert_array_equal(got["filled_area"], want["area_filled"])
    holed = want["area_filled"] > want["area"]
    assert holed.sum() > 100 and (~holed).sum() > 100  # both kinds, many of each


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrays(np.int16, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 3))
)
def test_random_small_labels_match_regionprops(labels: np.ndarray) -> None:
    """Adjacent labels, diagonal contacts, window edges: the vectorised measures stay exact."""
    ids = np.unique(labels[labels > 0])
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = (np.arange(labels.size).reshape(labels.shape) * 37) % 256
    got = measure(labels, rgb, ids, mpp=1.0)
    if ids.size:
        assert_matches(got, reference(labels, rgb, ids))


def test_dsb2018_ground_truth_matches_regionprops(dsb2018: Path) -> None:
    index = json.loads((dsb2018 / "index.json").read_text())
    he = [e for e in index if e["modality"] == "brightfield_he"]
    fluorescence = [e for e in index if e["modality"] == "fluorescence"]
    assert len(he) == 8
    for entry in he + fluorescence[::8]:  # all 8 H&E and 6 of the 41 fluorescence images
        prefix = entry["file_prefix"]
        labels = np.asarray(Image.open(dsb2018 / f"{prefix}_labels.png"))
        rgb = np.asarray(Image.open(dsb2018 / f"{prefix}_image.png").convert("RGB"))
        ids = np.unique(labels[labels > 0])
        assert ids.size == entry["nuclei"]
        assert_matches(measure(labels, rgb, ids, mpp=1.0), reference(labels, rgb, ids))


def test_units_scale_and_origin(ellipses: tuple[np.ndarray, np.ndarray]) -> None:
    labels, rgb = ellipses
    ids = np.unique(labels[labels > 0])
    px = measure(labels, rgb, ids, mpp=1.0)
    mpp, scale, (x0, y0) = 0.25, 2.0, (1000, 3000)
    got = measure(labels, rgb, ids, mpp=mpp, scale=scale, origin=(x0, y0))
    np.testing.assert_allclose(got["centroid_x"], (x0 + px["centroid_x"] + 0.5) * scale - 0.5)
    np.testing.assert_allclose(got["centroid_y"], (y0 + px["centroid_y"] + 0.5) * scale - 0.5)
    np.testing.assert_allclose(got["centroid_x_um"], got["centroid_x"] * mpp / scale)
    np.testing.assert_allclose(got["centroid_y_um"], got["centroid_y"] * mpp / scale)
    for name, origin in (("bbox_x0", x0), ("bbox_x1", x0), ("bbox_y0", y0), ("bbox_y1", y0)):
        np.testing.assert_array_equal(got[name], (origin + px[name]) * 2)
    power = {"area": 2, "length": 1, "none": 0}
    for name, kind in MORPHOLOGY.items():
        np.testing.assert_allclose(got[name], px[name] * mpp ** power[kind], err_msg=name)
    for name in ("mean_r", "std_b", "od_haematoxylin", "od_eosin"):
        np.testing.assert_array_equal(got[name], px[name])


def test_single_pixel_conventions() -> None:
    labels = np.zeros((5, 7), dtype=np.uint8)
    labels[2, 3] = 9
    rgb = np.full((5, 7, 3), 200, dtype=np.uint8)
    got = measure(labels, rgb, np.array([9]), mpp=0.5, scale=4.0, origin=(10, 20))
    # analysis pixel 13 covers level-0 pixels 52..55, whose centre is 53.5
    assert got["centroid_x"][0] == (10 + 3 + 0.5) * 4.0 - 0.5
    assert got["centroid_y"][0] == (20 + 2 + 0.5) * 4.0 - 0.5
    assert got["centroid_x_um"][0] == pytest.approx(53.5 * 0.5 / 4.0)
    assert (got["bbox_x0"][0], got["bbox_x1"][0]) == (52, 56)  # half-open, level-0 px
    assert (got["bbox_y0"][0], got["bbox_y1"][0]) == (88, 92)
    assert got["area"][0] == 0.25
    assert got["euler_number"][0] == 1
    assert got["mean_r"][0] == 200.0
    assert got["std_g"][0] == 0.0


def test_dtypes_follow_schema_and_build_a_table(ellipses: tuple[np.ndarray, np.ndarray]) -> None:
    labels, rgb = ellipses
    ids = np.unique(labels[labels > 0])
    got = measure(labels, rgb, ids, mpp=0.5)
    assert tuple(got) == MEASURED_COLUMNS
    for name, values in got.items():
        field = NUCLEUS_SCHEMA.field(name)
        assert values.dtype == np.dtype(field.type.to_pandas_dtype()), name
        assert values.shape == ids.shape
    n = ids.size
    identity = {
        "nucleus_id": pa.array(np.arange(n), pa.int64()),
        "tile_row": pa.array(np.zeros(n, np.int32)),
        "tile_col": pa.array(np.zeros(n, np.int32)),
        "type": pa.array(np.ones(n, np.int16)),
        "type_name": pa.array(["nucleus"] * n),
        "type_prob": pa.array(np.ones(n, np.float32)),
    }
    columns = {**identity, **{k: pa.array(v) for k, v in got.items()}}
    table = pa.table([columns[name] for name in NUCLEUS_SCHEMA.names], schema=NUCLEUS_SCHEMA)
    assert table.num_rows == n


@pytest.mark.parametrize("ids", [np.array([], dtype=np.int64), np.array([]), []])
def test_empty_ids(ids: np.ndarray) -> None:
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[2:4, 2:4] = 1
    got = measure(labels, np.zeros((8, 8, 3), np.uint8), np.asarray(ids), mpp=0.5)
    assert tuple(got) == MEASURED_COLUMNS
    for name, values in got.items():
        assert values.shape == (0,)
        assert values.dtype == np.dtype(NUCLEUS_SCHEMA.field(name).type.to_pandas_dtype())


@pytest.mark.parametrize(
    ("labels", "rgb", "ids", "mpp", "match"),
    [
        (np.zeros((4, 4), np.int32), np.zeros((4, 5, 3), np.uint8), [1], 0.5, "rgb must be"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8), [1], 0.5, "integer"),
        (np.ones((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8), [1], 0.0, "positive"),
        (np.ones((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8), [2], 0.5, "not present"),
        (np.ones((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8), [1, 1], 0.5, "distinct"),
        (np.ones((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8), [0], 0.5, "non-zero"),
    ],
)
def test_bad_input_raises(
    labels: np.ndarray, rgb: np.ndarray, ids: list[int], mpp: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        measure(labels, rgb, np.asarray(ids), mpp=mpp)


def test_owned_ranks_on_their_box_measure_as_the_window(dsb2018: Path) -> None:
    """The instance stage measures a tile's owned nuclei as ranks 1..n over their bounding box,
    not as their labels in the whole window: every column the same, bit for bit."""
    index = json.loads((dsb2018 / "index.json").read_text())
    entry = max((e for e in index if e["modality"] == "brightfield_he"), key=lambda e: e["nuclei"])
    labels = np.asarray(Image.open(dsb2018 / f"{entry['file_prefix']}_labels.png")).astype(np.int32)
    rgb = np.asarray(Image.open(dsb2018 / f"{entry['file_prefix']}_image.png").convert("RGB"))
    h, w = labels.shape
    window, core = Box(300, 700, 300 + w, 700 + h), Box(340, 740, 300 + w - 60, 700 + h - 50)
    owned = owned_instances(labels, window, core, 2)
    assert 10 < owned.labels.size < np.unique(labels).size - 1
    want = measure(labels, rgb, owned.labels, mpp=0.5, scale=2.0, origin=(window.x0, window.y0))
    box, ranks = crop_to_content(window, owned_ranks(labels, owned))
    assert box.width * box.height < labels.size
    inside = (
        slice(box.y0 - window.y0, box.y1 - window.y0),
        slice(box.x0 - window.x0, box.x1 - window.x0),
    )
    got = measure(ranks, rgb[inside], np.arange(1, owned.labels.size + 1), mpp=0.5, scale=2.0,
                  origin=(box.x0, box.y0))  # fmt: skip
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
