"""Atomic writes, the nucleus Parquet file and the manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from nucscale.errors import OutputError
from nucscale.features import NUCLEUS_SCHEMA, SCHEMA_VERSION
from nucscale.store import (
    ManifestRow,
    atomic_write,
    nuclei_path,
    read_manifest,
    read_metadata,
    replace_dir,
    write_manifest,
    write_nuclei,
)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a" / "out.bin"

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_permission_error_is_an_output_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            atomic_write(ro / "x.bin", lambda tmp: tmp.write_bytes(b"x"))
    finally:
        ro.chmod(0o700)


def test_output_path_blocked_by_a_file(tmp_path: Path) -> None:
    (tmp_path / "nuclei").write_text("a file where a folder must go")
    target = tmp_path / "nuclei" / "slide_id=a" / "part-0.parquet"
    with pytest.raises(OutputError, match=r"part-0\.parquet: cannot write"):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"x"))


def test_oserror_during_write_names_the_file(tmp_path: Path) -> None:
    def disk_full(tmp: Path) -> None:
        raise OSError(28, "No space left on device")

    target = tmp_path / "out.parquet"
    with pytest.raises(OutputError, match=r"out\.parquet: cannot write: No space left"):
        atomic_write(target, disk_full)
    assert list(tmp_path.iterdir()) == []


def test_replace_dir(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "f").write_text("old")
    replace_dir(tmp_path / "new", tmp_path / "dst")
    assert (tmp_path / "dst" / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst"]


def _fragment(n: int, tile: int) -> pa.Table:
    cols = {}
    for f in NUCLEUS_SCHEMA:
        if pa.types.is_string(f.type):
            cols[f.name] = pa.array(["nucleus"] * n, f.type)
        elif pa.types.is_binary(f.type):
            cols[f.name] = pa.array([shapely.box(i, tile, i + 1, tile + 1).wkb for i in range(n)])
        else:
            cols[f.name] = pa.array([tile * 100 + i for i in range(n)], f.type)
    return pa.table(cols, schema=NUCLEUS_SCHEMA)


def test_write_nuclei_schema_metadata_and_row_groups(tmp_path: Path) -> None:
    path = nuclei_path(tmp_path, "s1")
    n = write_nuclei(path, [_fragment(3, 0), _fragment(0, 1), _fragment(2, 2)], {"segmenter": "x"})
    assert n == 5
    assert path == tmp_path / "nuclei" / "slide_id=s1" / "part-0.parquet"
    f = pq.ParquetFile(path)
    assert f.schema_arrow.remove_metadata() == NUCLEUS_SCHEMA
    assert f.metadata.num_row_groups == 2  # one per non-empty tile, in tile order
    assert f.read().column("nucleus_id").to_pylist() == [0, 1, 2, 200, 201]
    meta = read_metadata(path)
    assert meta == {"segmenter": "x", "schema_version": SCHEMA_VERSION}
    assert b"geo" in f.schema_arrow.metadata


def test_write_nuclei_empty_slide(tmp_path: Path) -> None:
    path = nuclei_path(tmp_path, "empty")
    assert write_nuclei(path, [], {}) == 0
    assert pq.read_table(path).num_rows == 0


def test_manifest_merges_rows(tmp_path: Path) -> None:
    write_manifest(tmp_path, [ManifestRow("a", "/x/a.svs", "failed", error="bad")])
    write_manifest(
        tmp_path,
        [
            ManifestRow("a", "/x/a.svs", "done", nuclei=5),
            ManifestRow("b", "/x/b.svs", "done", nuclei=1),
        ],
    )
    write_manifest(tmp_path, [ManifestRow("a", "/y/a.svs", "failed", error="duplicate slide id")])
    rows = read_manifest(tmp_path)
    assert sorted(rows) == [("a", "/x/a.svs"), ("a", "/y/a.svs"), ("b", "/x/b.svs")]
    assert rows[("a", "/x/a.svs")].status == "done"
    assert rows[("a", "/x/a.svs")].nuclei == 5
    assert rows[("a", "/y/a.svs")].error == "duplicate slide id"


@pytest.mark.parametrize(
    ("shape", "chunks"), [((37, 53), (8, 8)), ((2, 40, 41), (2, 7, 9)), ((64, 64), (16, 16))]
)
def test_pyramid_subsample_read_a_chunk_at_a_time_is_every_other_pixel(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> None:
    """The label pyramid's reduction reads its block one source chunk at a time (odd chunk
    sizes, blocks past the array's edge, leading axes): every other pixel, as one strided
    selection of the block gives."""
    import numpy as np
    import zarr

    from nucscale.store._omezarr import _subsample

    data = np.random.default_rng(0).integers(1, 100, shape)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=shape, chunks=chunks, dtype="int64")
    arr[:] = data
    checked = 0
    for r0 in range(0, shape[-2], 6):
        for c0 in range(0, shape[-1], 10):
            for size in (4, 16, 60):
                got = _subsample(arr, slice(r0, r0 + size), slice(c0, c0 + size))
                want = data[..., r0 : r0 + size : 2, c0 : c0 + size : 2]
                assert got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("shape", "chunks"), [((3, 37, 53), (3, 8, 8)), ((3, 41, 40), (3, 7, 9)), ((64, 66), (16, 16))]
)
def test_pyramid_mean_a_chunk_at_a_time_is_the_blocks_mean(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]
) -> None:
    """The image pyramid's 2 x 2 mean, read one source chunk at a time (even chunks) or as the
    block (odd ones), is the mean of the whole block, odd edges included."""
    import numpy as np
    import zarr

    from nucscale.store._omezarr import _mean2, _mean2_of

    data = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=shape, chunks=chunks, dtype="uint8")
    arr[:] = data
    checked = 0
    for r0 in range(0, shape[-2], 5):  # odd starts read the block at once
        for c0 in range(0, shape[-1], 10):
            for size in (4, 16, 60):
                got = _mean2(arr, slice(r0, r0 + size), slice(c0, c0 + size))
                want = _mean2_of(data[..., r0 : r0 + size, c0 : c0 + size])
                assert got.dtype == np.uint8 and got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                checked += 1
    assert checked > 50
    # the block formula itself: a 2 x 2 mean, rounded half to even; an odd edge repeats itself
    assert _mean2_of(np.array([[1, 2, 9], [3, 4, 9]], np.uint8)).tolist() == [[2, 9]]


@pytest.mark.parametrize(("shape", "chunk", "painted"), [((77, 130), 32, 2), ((77, 130), 20, 1),
                                                          ((64, 66), 12, 0)])  # fmt: skip
@pytest.mark.parametrize("made_by_level0_only", [False, True])
def test_painted_levels_and_the_finished_pyramid_are_every_2k_th_pixel(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shape: tuple[int, int],
    chunk: int,
    painted: int,
    made_by_level0_only: bool,
) -> None:
    """Each level-0 chunk's painter writes its chunk of the painted levels; the finishing step
    builds the rest from the last painted one: level k is level 0 taken every 2**k pixels, edge
    chunks and empty chunks included, also on a scratch image of an earlier version (level 0,
    and a level 1 of another shape and chunking) kept for a resume."""
    import numpy as np
    import zarr

    from nucscale.store import _omezarr as om

    monkeypatch.setattr(om, "MIN_LEVEL_SIDE", 4)  # small arrays, several levels
    monkeypatch.setattr(om, "MIN_PAINTED_CHUNK", 8)
    assert om.painted_levels(shape, chunk) == painted
    path = tmp_path / "labels.zarr"
    if made_by_level0_only:  # and a level 1 chunked as level 0, by an earlier finishing step
        group = zarr.open_group(str(path), mode="w")
        group.create_array("0", shape=shape, chunks=(chunk, chunk), dtype="int64", fill_value=0)
        old = group.create_array("1", shape=(1, 1), chunks=(chunk, chunk), dtype="int64")
        old[:] = 7
        om.add_painted_levels(path)
    else:
        om.create_label_image(path, shape, chunk, {"slide_id": "s"})
    data = np.random.default_rng(1).integers(0, 50, shape)
    data[:chunk, chunk : 2 * chunk] = 0  # a chunk without nuclei
    for r in range(-(-shape[0] // chunk)):
        for c in range(-(-shape[1] // chunk)):
            block = data[r * chunk : (r + 1) * chunk, c * chunk : (c + 1) * chunk]
            if block.any():  # level 0 and the painted levels
                om.paint_levels(path, r, c, block)
    levels = om.finish_label_image(path, 0.5)
    assert levels == 5
    group = zarr.open_group(str(path), mode="r")
    for k in range(levels):
        level = group[str(k)]
        assert isinstance(level, zarr.Array)
        np.testing.assert_array_equal(level[:], data[:: 2**k, :: 2**k], err_msg=f"level {k}")
        if 0 < k <= painted:
            assert level.chunks == (chunk >> k, chunk >> k)
