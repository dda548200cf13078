"""Batched manifest writes: O(slides) rows written in total, nothing lost at flush."""

from __future__ import annotations

from pathlib import Path

from nucscale.store import ManifestRow, ManifestWriter, read_manifest, write_manifest


def _row(i: int, status: str = "done") -> ManifestRow:
    return ManifestRow(slide_id=f"s{i:05d}", path=f"/slides/s{i:05d}.svs", status=status)


def test_a_thousand_slides_write_o_of_n_rows_not_n_squared(tmp_path: Path) -> None:
    clock = [0.0]
    writer = ManifestWriter(tmp_path, clock=lambda: clock[0])
    n = 1000
    for i in range(n):
        writer.add([_row(i)])
    writer.flush()
    # one rewrite per finished slide (the old way) writes n(n+1)/2 = 500,500 rows
    assert writer.rows_written <= 12 * n
    rows = read_manifest(tmp_path)
    assert len(rows) == n and {r.status for r in rows.values()} == {"done"}


def test_a_rerun_over_a_large_manifest_stays_linear(tmp_path: Path) -> None:
    write_manifest(tmp_path, [_row(i) for i in range(2000)])
    writer = ManifestWriter(tmp_path, clock=lambda: 0.0)
    for i in range(500):  # the same slides again: replaced, not added
        writer.add([_row(i, "failed")])
    writer.flush()
    assert writer.rows_written <= 11 * 500 + 2000
    rows = read_manifest(tmp_path)
    assert len(rows) == 2000
    assert sum(r.status == "failed" for r in rows.values()) == 500


def test_a_finished_slide_reaches_the_file_within_the_wait(tmp_path: Path) -> None:
    write_manifest(tmp_path, [_row(i) for i in range(100)])
    clock = [0.0]
    writer = ManifestWriter(tmp_path, max_wait_s=30.0, clock=lambda: clock[0])
    writer.add([_row(100)])  # 1 of 101 rows waiting: below the batch fraction
    assert len(read_manifest(tmp_path)) == 100
    clock[0] = 31.0
    writer.add([_row(101)])
    assert len(read_manifest(tmp_path)) == 102


def test_flush_writes_nothing_when_nothing_waits(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path)
    writer.flush()
    assert not (tmp_path / "manifest.parquet").exists() and writer.rows_written == 0
