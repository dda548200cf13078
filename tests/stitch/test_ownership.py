"""Ownership: every nucleus of a field is owned by exactly one tile, for any grid."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import ellipse
from skimage.segmentation import relabel_sequential

from nucscale.stitch import (
    LOCAL_BITS,
    crop_to_content,
    edge_labels,
    ids_of_ranks,
    owned_instances,
    owned_ranks,
    paint,
    relabel_owned,
    split_by_chunk,
)
from nucscale.tiling import Box, TileGrid


def nuclei_field(seed: int, shape: tuple[int, int], n: int, max_r: int) -> np.ndarray:
    """Non-overlapping random ellipses, labelled 1..k."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.int32)
    k = 0
    for _ in range(n):
        r0, c0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        ra, rb = rng.integers(2, max_r + 1, size=2)
        rr, cc = ellipse(r0, c0, ra, rb, shape=shape, rotation=rng.uniform(0, np.pi))
        if rr.size and not out[rr, cc].any():
            k += 1
            out[rr, cc] = k
    return out


def window_of(field: np.ndarray, box: Box) -> np.ndarray:
    """What a translation-consistent segmenter returns for ``box``: the field, 0 outside."""
    h, w = field.shape
    out = np.zeros((box.height, box.width), field.dtype)
    inner = box.intersect(Box(0, 0, w, h))
    if inner is not None:
        out[inner.y0 - box.y0 : inner.y1 - box.y0, inner.x0 - box.x0 : inner.x1 - box.x0] = field[
            inner.y0 : inner.y1, inner.x0 : inner.x1
        ]
    return out


def run_tiles(field: np.ndarray, grid: TileGrid, crop: bool = False) -> dict[int, tuple[int, int]]:
    """Map global label -> owning tile, asserting no nucleus is owned twice.

    ``crop``: windows are cut to the image, as a dense model's valid region is when it computes
    no patch beyond the image; ownership is then told the image's extent.
    """
    owner: dict[int, tuple[int, int]] = {}
    image = Box(0, 0, field.shape[1], field.shape[0])
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            win = grid.window(r, c)
            if crop:
                win = win.intersect(image) or win
            raw = window_of(field, win)
            local, _, _ = relabel_sequential(raw)  # a segmenter numbers instances its own way
            owned = owned_instances(
                local, win, grid.core(r, c), grid.index(r, c), image if crop else None
            )
            for lab in owned.labels:
                g = int(raw[local == lab][0])
                assert g not in owner, f"nucleus {g} owned by {owner[g]} and {(r, c)}"
                owner[g] = (r, c)
    return owner


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    tile=st.integers(16, 90),
    extra_halo=st.integers(0, 10),
    h=st.integers(60, 200),
    w=st.integers(60, 200),
    crop=st.booleans(),
)
def test_every_nucleus_owned_exactly_once(
    seed: int, tile: int, extra_halo: int, h: int, w: int, crop: bool
) -> None:
    max_r = 7
    field = nuclei_field(seed, (h, w), n=80, max_r=max_r)
    grid = TileGrid(w, h, tile, halo=2 * max_r + 2 + extra_halo)
    owner = run_tiles(field, grid, crop)
    assert set(owner) == set(range(1, int(field.max()) + 1))
    # the owner is the tile whose core holds the centroid
    for g, (r, c) in owner.items():
        ys, xs = np.nonzero(field == g)
        core = grid.core(r, c)
        assert core.x0 <= xs.mean() < core.x1
        assert core.y0 <= ys.mean() < core.y1


def test_instances_cut_by_the_window_are_never_owned() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[0:5, 8:12] = 1  # touches the top edge, centroid inside the core
    labels[8:12, 8:12] = 2
    owned = owned_instances(labels, Box(0, 0, 20, 20), Box(2, 2, 18, 18), tile_index=3)
    assert owned.labels.tolist() == [2]
    assert owned.nucleus_ids.tolist() == [(3 << LOCAL_BITS) | 1]
    assert edge_labels(labels).tolist() == [1]


def test_the_image_edge_cuts_nothing() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[0:5, 8:12] = 1  # touches the top edge: the image's own edge here
    labels[15:20, 8:12] = 2  # touches the bottom edge: a cut, the image goes on below
    window, core, image = Box(30, 0, 50, 20), Box(32, 0, 48, 18), Box(0, 0, 100, 100)
    assert edge_labels(labels, window, image).tolist() == [2]
    owned = owned_instances(labels, window, core, 0, image)
    assert owned.labels.tolist() == [1]
    assert owned_instances(labels, window, core, 0).labels.size == 0  # no extent: all cut


def test_centroid_on_core_boundary_goes_to_exactly_one_tile() -> None:
    # columns 9, 10, 11: centroid x is exactly 10, the first column of the right core
    labels = np.zeros((20, 30), np.int32)
    labels[5:7, 9:12] = 1
    left = owned_instances(labels, Box(0, 0, 30, 20), Box(0, 0, 10, 20), 0)
    right = owned_instances(labels, Box(0, 0, 30, 20), Box(10, 0, 20, 20), 1)
    assert (left.labels.size, right.labels.size) == (0, 1)


def test_ids_follow_centroid_order_and_relabel() -> None:
    labels = np.zeros((30, 30), np.int32)
    labels[20:24, 3:6] = 1  # lower
    labels[3:6, 20:24] = 2  # upper
    owned = owned_instances(labels, Box(100, 200, 130, 230), Box(100, 200, 130, 230), 5)
    assert owned.labels.tolist() == [2, 1]
    ids = relabel_owned(labels, owned)
    assert set(np.unique(ids)) == {0, (5 << LOCAL_BITS) | 1, (5 << LOCAL_BITS) | 2}
    assert ids[4, 21] == (5 << LOCAL_BITS) | 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), order_seed=st.integers(0, 1000))
def test_paint_is_order_independent(seed: int, order_seed: int) -> None:
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(-10, 40, size=2))
        w, h = (int(v) for v in rng.integers(1, 30, size=2))
        ids = rng.integers(0, 50, size=(h, w)).astype(np.int64) * (rng.random((h, w)) < 0.5)
        pieces.append((Box(x0, y0, x0 + w, y0 + h), ids))
    chunk = Box(0, 0, 48, 40)
    ref = paint(chunk, pieces)
    shuffled = [pieces[i] for i in np.random.default_rng(order_seed).permutation(len(pieces))]
    assert np.array_equal(paint(chunk, shuffled), ref)
    # every painted pixel holds the smallest non-zero id any piece offers there
    full = np.full((40, 48), np.iinfo(np.int64).max)
    for box, ids in pieces:
        inter = chunk.intersect(box)
        if inter is None:
            continue
        src = ids[inter.y0 - box.y0 : inter.y1 - box.y0, inter.x0 - box.x0 : inter.x1 - box.x0]
        dst = full[inter.y0 : inter.y1, inter.x0 : inter.x1]
        np.minimum(dst, np.where(src > 0, src, np.iinfo(np.int64).max), out=dst)
    expected = np.where(full == np.iinfo(np.int64).max, 0, full)
    assert np.array_equal(ref, expected)


def test_crop_to_content() -> None:
    ids = np.zeros((10, 12), np.int64)
    ids[3:5, 4:9] = 7
    box, crop = crop_to_content(Box(100, 50, 112, 60), ids)
    assert box == Box(104, 53, 109, 55)
    assert crop.shape == (2, 5) and (crop == 7).all()
    empty_box, empty = crop_to_content(Box(0, 0, 4, 4), np.zeros((4, 4), np.int64))
    assert empty.size == 0 and empty_box.width == 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000))
def test_split_by_chunk_paints_every_chunk_as_the_whole_piece(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x0, y0 = (int(v) for v in rng.integers(-5, 30, size=2))
    h, w = (int(v) for v in rng.integers(1, 60, size=2))
    ids = rng.integers(1, 9, size=(h, w)).astype(np.int64) * (rng.random((h, w)) < 0.3)
    box = Box(x0, y0, x0 + w, y0 + h)
    grid = TileGrid(64, 56, 16, 8)
    chunks = [((r, c), grid.core(r, c)) for r in range(grid.n_rows) for c in range(grid.n_cols)]
    pieces = split_by_chunk(box, ids, chunks)
    for key, chunk in chunks:
        whole = paint(chunk, [(box, ids)])
        own = [pieces[key]] if key in pieces else []
        assert np.array_equal(paint(chunk, own), whole)
        assert (key in pieces) == bool(whole.any())  # a chunk the ids leave empty gets no piece
        if own:  # each piece lies inside its chunk and is cropped to its content
            piece_box, piece = own[0]
            assert chunk.intersect(piece_box) == piece_box
            assert piece[0].any() and piece[-1].any() and piece[:, 0].any() and piece[:, -1].any()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), core=st.integers(20, 60))
def test_ranks_in_place_and_their_ids_are_the_relabelled_window(seed: int, core: int) -> None:
    """The instance stage writes owned ranks over its own labels, a band of rows at a time,
    and turns only the kept pieces into ids: the same ids as relabelling the window."""
    field = nuclei_field(seed, (300, 90), 60, 7)
    window, tile = Box(0, 0, 90, 300), Box(10, 10, 10 + core, 10 + core)
    owned = owned_instances(field, window, tile, 3)
    expected = relabel_owned(field, owned)
    fresh = owned_ranks(field, owned)
    assert fresh.dtype == np.int32
    in_place = field.copy()
    assert owned_ranks(in_place, owned, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, fresh)
    assert in_place.max() == owned.labels.size and (in_place > 0).sum() == (expected > 0).sum()
    np.testing.assert_array_equal(ids_of_ranks(in_place, owned), expected)
