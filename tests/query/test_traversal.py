"""No way out of OUT: every public entry point that takes a slide id (or SQL) is tried with a
path that leaves the output folder, and nothing outside it is read or written.

The bait (conftest) is a valid nucleus table and label image just outside ``out``, exactly where
``a/../../../victim`` and ``../../victim`` lead: before the ids were checked, ``export`` read the
table and wrote ``victim.csv`` beside it. Each attempt must be refused with one line, and the
files outside ``out`` (and ``out`` itself) must be byte-identical afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import nucscale
from nucscale.analysis import read_run
from nucscale.cli import _results, app  # noqa: F401 - registers the commands
from nucscale.errors import InputError, NucscaleError
from nucscale.report import build_report
from nucscale.store import image_path, labels_path, manifest_path, nuclei_path

runner = CliRunner()

#: Ids that lead from OUT's sub-folders to the bait beside OUT, or name OUT's parents.
ESCAPES = ["a/../../../victim", "../../victim", "..", "/tmp", "a\\..\\..\\victim", "."]


def _outside(snapshot: Callable, tmp_path: Path, out: Path) -> dict[str, tuple[str, int, str]]:
    return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(out.name)}


def _cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def _api_attempts(out: Path, sid: str) -> list[Callable[[], object]]:
    res = nucscale.open_results(out)
    return [
        lambda: res.table_path(sid),
        lambda: res.labels(sid),
        lambda: nuclei_path(out, sid),
        lambda: labels_path(out, sid),
        lambda: image_path(out, sid),
        lambda: read_run(out, sid),
        lambda: build_report(out, [sid]),
    ]


@pytest.mark.parametrize("sid", ESCAPES)
def test_escaping_slide_ids_are_refused_everywhere(
    results_out: Path, tmp_path: Path, snapshot: Callable, sid: str
) -> None:
    before, inside = _outside(snapshot, tmp_path, results_out), snapshot(results_out)
    for attempt in _api_attempts(results_out, sid):
        with pytest.raises(InputError, match="is not allowed"):
            attempt()
    for args in (
        ["export", str(results_out), "--format", "csv", "--slide", sid],
        ["export", str(results_out), "-f", "qupath-geojson", "--slide", sid, "--to", str(tmp_path)],
        ["export", str(results_out), "-f", "csv", "--slide", "a", "--slide", sid],
        ["report", str(results_out), "--slide", sid],
    ):
        code, output = _cli(*args)
        assert code == 2, output
        assert "is not allowed" in output and output.strip().count("\n") == 0, output
    assert _outside(snapshot, tmp_path, results_out) == before
    assert snapshot(results_out) == inside  # not even an empty exports/ or report/ folder


def test_a_pyramid_level_cannot_name_a_path(results_out: Path) -> None:
    res = nucscale.open_results(results_out)
    assert int(res.labels("a", 0)[10, 10]) == 1
    for level in ("../../../victim.zarr/0", -1, 0.5, True):
        with pytest.raises(InputError, match="pyramid level"):
            res.labels("a", level)  # type: ignore[arg-type]


def test_sql_cannot_reach_the_bait(results_out: Path, tmp_path: Path, snapshot: Callable) -> None:
    before, inside = _outside(snapshot, tmp_path, results_out), snapshot(results_out)
    table = results_out / "nuclei" / "slide_id=a" / "part-0.parquet"
    victim = tmp_path / "victim" / "part-0.parquet"
    for sql in (
        f"SELECT * FROM read_parquet('{table.parent}/../../../victim/part-0.parquet')",
        f"SELECT * FROM read_parquet('{victim}')",
        f"COPY (SELECT 1) TO '{tmp_path / 'victim.csv'}'",
        f"COPY (SELECT * FROM nuclei) TO '{table}' (FORMAT parquet, USE_TMP_FILE false)",
    ):
        code, output = _cli("query", str(results_out), sql)
        assert code == 2 and "query refused" in output, output
        assert output.strip().count("\n") == 0 and "Traceback" not in output, output
    assert _outside(snapshot, tmp_path, results_out) == before
    assert snapshot(results_out) == inside


def test_an_edited_manifest_cannot_lead_out(
    results_out: Path, tmp_path: Path, snapshot: Callable
) -> None:
    """A manifest row whose id leaves OUT (written around nucscale) is refused when read."""
    path = manifest_path(results_out)
    rows = pq.read_table(path).to_pylist()
    rows[0]["slide_id"] = "a/../../../victim"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), path)
    before, inside = _outside(snapshot, tmp_path, results_out), snapshot(results_out)
    with pytest.raises(NucscaleError, match=r"manifest\.parquet: slide id 'a/\.\./\.\./\.\./"):
        nucscale.open_results(results_out).slide_ids()
    for args in (["export", str(results_out), "-f", "csv"], ["report", str(results_out)]):
        code, output = _cli(*args)
        assert code == 2 and "manifest.parquet: slide id" in output, output
        assert output.strip().count("\n") == 0, output
    code, output = _cli("query", str(results_out), "SELECT count(*) FROM nuclei")
    assert code == 2 and "manifest.parquet: slide id" in output, output
    assert _outside(snapshot, tmp_path, results_out) == before
    assert snapshot(results_out) == inside
