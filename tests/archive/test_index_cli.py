"""nucscale index from the command line, and header reading on real Dask worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from nucscale.archive import list_files
from nucscale.archive._synthetic import TruthRow
from nucscale.archive._walk import index_rows


def test_cli_indexes_and_writes_the_flat_layout(
    archive: tuple[Path, list[TruthRow]], tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    root, truth = archive
    out, flat = tmp_path / "index.parquet", tmp_path / "flat"
    res = nucscale_cli("index", str(root), "--out", str(out), "--layout", "flat", str(flat))
    assert res.returncode == 0, res.stderr
    n_files = len(list_files([root]))
    assert (
        f"{out}: {n_files} files ({n_files} read, 0 unchanged since the last index)" in res.stdout
    )
    assert "CBIS-DDSM roles: 8 full, 9 crop, 9 mask; 8 summed labels" in res.stdout
    assert f"flat layout: 26 files with a role in the archive, 26 links in {flat}" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    links = sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*.dcm"))
    assert len(links) == 26
    assert "Mass/Test/Mass-Test_P_00173_LEFT_CC_FULL.dcm" in links
    assert "Mass/Test/Mass-Test_P_00173_LEFT_CC_MASK_2.dcm" in links
    by_path = {t.path: t for t in truth}
    for link in flat.rglob("*.dcm"):
        t = by_path[os.readlink(link)]
        role = link.stem.split("_")[5]
        assert role == t.role.upper()
        assert link.stem.startswith(t.case)
    again = nucscale_cli("index", str(root), "--out", str(out))
    assert f"({0} read, {n_files} unchanged since the last index)" in again.stdout


def test_cli_refuses_a_wrong_output_in_one_line(
    archive: tuple[Path, list[TruthRow]], tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    res = nucscale_cli("index", str(archive[0]), "--out", str(tmp_path / "index.csv"))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'index.csv'}: the index is a Parquet file; name it INDEX.parquet"
    )
    assert not (tmp_path / "index.csv").exists()
    res = nucscale_cli("index", str(tmp_path / "nowhere"), "--out", str(tmp_path / "i.parquet"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such file or folder"


def test_headers_read_on_dask_workers_equal_local(
    archive: tuple[Path, list[TruthRow]], dask_cluster: str
) -> None:
    from distributed import Client

    files = list_files([archive[0]])
    local, _ = index_rows(files)
    with Client(dask_cluster) as client:
        remote, counts = index_rows(files, client=client, batch=8)
        workers_used = len(client.run(lambda: 1))
    assert counts.read == len(files)
    assert workers_used == 2
    pd.testing.assert_frame_equal(pd.DataFrame(remote), pd.DataFrame(local))
