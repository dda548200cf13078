"""The maps store: patches written batch by batch as the network hands them out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nucscale.tiling import Box, create_maps_store, maps_done, read_maps, write_patches


def _patch(value: float) -> np.ndarray:
    rng = np.random.default_rng(int(value))
    return (rng.random((2, 8, 8)) + value).astype(np.float16)


def test_patches_written_batch_by_batch_land_in_their_chunks(tmp_path: Path) -> None:
    path = tmp_path / "maps.zarr"
    create_maps_store(path, 2, (32, 40), 8, {"slide": "s"})
    # a tile's patches in row order, with gaps (no tissue) inside rows and a row left out;
    # batches of different sizes run across rows, and one patch is all zeros
    starts = [(0, 0), (0, 8), (0, 24), (8, 16), (8, 24), (8, 32), (24, 0), (24, 8)]
    maps = [_patch(i + 1) for i in range(len(starts))]
    maps[4] = np.zeros((2, 8, 8), np.float16)
    batches = [(starts[:3], np.stack(maps[:3])), (starts[3:4], np.stack(maps[3:4])),
               (starts[4:], np.stack(maps[4:]))]  # fmt: skip
    handed: list[int] = []

    def lazily() -> object:
        for b in batches:
            handed.append(len(b[0]))
            yield b

    assert not maps_done(path, 0, 1)
    spent = write_patches(path, 0, 1, lazily())  # type: ignore[arg-type]
    assert handed == [3, 1, 4] and spent > 0
    assert maps_done(path, 0, 1) and not maps_done(path, 0, 0)
    expected = np.zeros((2, 32, 40), np.float16)
    for (y, x), m in zip(starts, maps, strict=True):
        expected[:, y : y + 8, x : x + 8] = m
    assert np.array_equal(read_maps(path, Box(0, 0, 40, 32)), expected)
    assert np.array_equal(read_maps(path, Box(5, 3, 29, 30)), expected[:, 3:30, 5:29])
    # chunks of computed patches are stored; the all-zero one and the gaps are not
    chunk_files = {p.relative_to(path / "c").as_posix() for p in (path / "c").rglob("*")
                   if p.is_file()}  # fmt: skip
    assert chunk_files == {f"0/{y // 8}/{x // 8}" for i, (y, x) in enumerate(starts) if i != 4}


def test_a_tile_without_patches_is_marked_done(tmp_path: Path) -> None:
    path = tmp_path / "maps.zarr"
    create_maps_store(path, 2, (16, 16), 8, {})
    write_patches(path, 3, 4, iter([]))
    assert maps_done(path, 3, 4)
    assert not (path / "c").exists()
