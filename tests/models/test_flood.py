"""The watershed behind every model's post-processing: a component floods the same in any window.

scikit-image leaves ties between marker pixels to its heap's layout, i.e. to the whole window;
:func:`nucscale.models._flood.flood` breaks them in raster order. The scene below has plateaus
(three elevation levels) and thousands of markers, so ties are everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from nucscale.models._flood import flood, flood_components, raster_ordered

CROPS = [(0, 0), (7, 13), (50, 3), (1, 1), (91, 120)]


def _plateau_scene(dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = ndi.gaussian_filter(rng.random((300, 300)), 4) > 0.52  # 127 blobs, < 900 px
    comps, _ = ndi.label(mask)
    elevation = (np.round(rng.random((300, 300)) * 2)).astype(dtype)  # 0, 1, 2
    markers, _ = ndi.label(mask & (rng.random((300, 300)) < 0.08))
    return elevation, markers, mask, comps


def _differences(segment, elevation, markers, mask, comps) -> int:  # type: ignore[no-untyped-def]
    """Pixels of components held whole by a crop that the crop labels unlike the whole."""
    whole = segment(elevation, markers, mask)
    differ = 0
    for y0, x0 in CROPS:
        crop = segment(elevation[y0:, x0:], markers[y0:, x0:], mask[y0:, x0:])
        cut = np.zeros(comps.max() + 1, bool)
        cut[np.unique(comps[:y0])] = True
        cut[np.unique(comps[:, :x0])] = True
        held = mask[y0:, x0:] & ~cut[comps[y0:, x0:]]
        assert held.sum() > 4_000
        differ += int(np.count_nonzero(crop[held] != whole[y0:, x0:][held]))
    return differ


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16])
def test_component_floods_the_same_in_every_window(dtype: type) -> None:
    scene = _plateau_scene(dtype)
    assert _differences(lambda e, m, k: flood(e, m, k), *scene) == 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_flooding_by_components_equals_one_flood(dtype: type) -> None:
    """:func:`flood_components` gives the whole-window flood's labels, also for marker labels
    that span two components (dilated markers, as HoVer-Net's) and marker pixels off the mask;
    unreached components optionally numbered after the markers in raster order."""
    elevation, markers, mask, comps = _plateau_scene(dtype)
    markers = ndi.grey_dilation(markers, size=3)  # spills off the mask
    for i, row in enumerate(range(20, 300, 40)):  # one label across many components
        markers[row, :] = markers.max() + 1 + i
    spans = [m for m in np.unique(markers[mask]) if m and np.unique(comps[markers == m]).size > 2]
    assert len(spans) > 5 and (markers[~mask] > 0).sum() > 1_000
    markers[mask & (comps % 9 == 0)] = 0  # components no marker reaches
    want = flood(elevation, markers, mask, connectivity=1)
    got = flood_components(elevation, markers, mask)
    assert got.dtype == np.int32 and (want == 0).sum() > 1_000
    np.testing.assert_array_equal(got, want)
    numbered = flood_components(elevation, markers, mask, label_unreached=True)
    np.testing.assert_array_equal(numbered[want > 0], want[want > 0])
    unreached, n = ndi.label(mask & (want == 0), structure=ndi.generate_binary_structure(2, 1))
    np.testing.assert_array_equal(numbered[unreached > 0], unreached[unreached > 0] + markers.max())
    assert n > 5
    # an elevation given over boxes only (the U-Net's 1 - distance): the same labels, and the
    # function is asked only for boxes, never the window
    asked: list[tuple[slice, slice]] = []

    def over(box: tuple[slice, slice]) -> np.ndarray:
        asked.append(box)
        return elevation[box]

    np.testing.assert_array_equal(flood_components(over, markers, mask), want)
    assert asked and all(elevation[b].size < elevation.size // 4 for b in asked)


def test_region_leaves_out_components_whose_box_misses_it() -> None:
    elevation, markers, mask, comps = _plateau_scene(np.float32)
    want = flood(elevation, markers, mask, connectivity=1)
    region = (100, 40, 180, 260)  # x0, y0, x1, y1
    got = flood_components(elevation, markers, mask, region=region)
    boxes = ndi.find_objects(comps)
    meets = np.zeros(comps.max() + 1, bool)
    meets[1:] = [r.start < 260 and r.stop > 40 and c.start < 180 and c.stop > 100 for r, c in boxes]
    assert 10 < meets.sum() < meets.size - 10
    np.testing.assert_array_equal(got, np.where(meets[comps], want, 0))


def test_region_keeps_components_joined_by_a_marker_together() -> None:
    """A marker label across components (as HoVer-Net's dilated markers can be) is one
    instance: kept whole when any of it meets the region, also its pieces far from it."""
    elevation, markers, mask, comps = _plateau_scene(np.float32)
    boxes = ndi.find_objects(comps)
    near = [i for i, (r, _) in enumerate(boxes, start=1) if r.start < 105 and r.stop > 95]
    away = [i for i, (r, _) in enumerate(boxes, start=1) if r.start > 200]
    joined = int(markers.max()) + 1
    markers[comps == away[0]] = 0  # the far component floods from the joined marker alone
    for comp in (near[0], away[0]):
        y, x = np.argwhere(comps == comp)[0]
        markers[y, x] = joined
    want = flood(elevation, markers, mask, connectivity=1)
    got = flood_components(elevation, markers, mask, region=(0, 95, 300, 105))
    assert (want[comps == away[0]] == joined).all()
    assert (got[comps == away[0]] == joined).all()
    np.testing.assert_array_equal(got[got > 0], want[got > 0])
    kept = np.unique(got[got > 0])
    for lab, box in enumerate(ndi.find_objects(want), start=1):
        if box is not None and box[0].start < 105 and box[0].stop > 95:
            assert lab in kept and (got[want == lab] == lab).all(), lab
    assert kept.size < np.unique(want[want > 0]).size / 2


def test_scikit_image_alone_depends_on_the_window() -> None:
    """Why :func:`flood` exists: the same scene through plain scikit-image differs by crop."""
    scene = _plateau_scene(np.float32)
    assert _differences(lambda e, m, k: watershed(e, m, mask=k), *scene) > 100


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_ties_the_same_as_scikit_image(dtype: type) -> None:
    rng = np.random.default_rng(1)
    elevation = rng.random((200, 200)).astype(dtype)
    mask = ndi.gaussian_filter(rng.random((200, 200)), 3) > 0.48
    markers, n = ndi.label(mask & (rng.random((200, 200)) < 0.01))
    assert n > 100
    ours = flood(elevation, markers, mask)
    np.testing.assert_array_equal(ours, watershed(elevation, markers, mask=mask))
    # every marker value distinct: float64 input comes back unchanged
    if dtype == np.float64:
        np.testing.assert_array_equal(raster_ordered(elevation, markers), elevation)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32]),
)
def test_order_kept_and_marker_ties_in_raster_order(data: st.DataObject, dtype: type) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12))
    levels = data.draw(st.lists(st.integers(-3, 3), min_size=1, max_size=4))
    picks = data.draw(hnp.arrays(np.int8, shape, elements=st.integers(0, len(levels) - 1)))
    scale = data.draw(st.sampled_from([1.0, 1e-3, 7.5]))
    elevation = (np.asarray(levels, np.float64)[picks] * scale).astype(dtype)
    markers = data.draw(hnp.arrays(np.bool_, shape))
    keyed = raster_ordered(elevation, markers).ravel()
    src = elevation.astype(np.float64).ravel()
    flat = markers.ravel()
    # strictly ordered pairs keep their order
    lo, hi = np.meshgrid(np.arange(src.size), np.arange(src.size), indexing="ij")
    less = src[lo] < src[hi]
    assert (keyed[lo][less] < keyed[hi][less]).all()
    # a marker stays at or below every non-marker of its value (it left the queue first anyway)
    equal = (src[lo] == src[hi]) & flat[lo] & ~flat[hi]
    assert (keyed[lo][equal] <= keyed[hi][equal]).all()
    # equal markers: strictly increasing in raster order
    tie = (src[lo] == src[hi]) & flat[lo] & flat[hi] & (lo < hi)
    assert (keyed[lo][tie] < keyed[hi][tie]).all()
