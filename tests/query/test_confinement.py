"""SQL over the results reads the views ``nuclei`` and ``slides`` and nothing else; results are
still saved where the user asks (``--to``, :meth:`Results.write`), written by Python."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from typer.testing import CliRunner

import nucscale
from nucscale.cli import _results, app  # noqa: F401 - registers the commands
from nucscale.errors import QueryRefusedError

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


def _escapes(tmp_path: Path, out: Path) -> list[str]:
    table = out / "nuclei" / "slide_id=a" / "part-0.parquet"
    return [
        "SELECT * FROM read_csv('/etc/passwd')",
        f"COPY (SELECT 1) TO '{tmp_path / 'anywhere' / 'x.csv'}'",
        f"COPY (SELECT 1 AS v) TO '{tmp_path / 'x.parquet'}' (FORMAT parquet)",
        f"SELECT * FROM read_parquet('{table}')",  # OUT's own files: only through the views
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{table}' (FORMAT parquet, USE_TMP_FILE false)",
        f"SELECT * FROM glob('{out}/*')",
        f"ATTACH '{tmp_path / 'db.duckdb'}' AS db",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
    ]


def test_sql_reaching_beyond_the_views_is_refused(
    results_out: Path, tmp_path: Path, snapshot: Callable
) -> None:
    before = snapshot(tmp_path)
    res = nucscale.open_results(results_out)
    for sql in _escapes(tmp_path, results_out):
        with pytest.raises(QueryRefusedError) as err:
            res.sql(sql)
        text = str(err.value)
        assert text.startswith(f"{results_out}: query refused: ") and "\n" not in text, text
        assert (
            "queries read only the views nuclei, slides, features, regions and mammograms" in text
        )
        assert isinstance(err.value, PermissionError)
    assert snapshot(tmp_path) == before
    # the connection still answers, over the views
    assert res.sql("SELECT slide_id, count(*) FROM nuclei GROUP BY ALL ORDER BY 1").fetchall() == [
        ("a", 3),
        ("b", 2),
    ]
    assert res.sql("SELECT slide_id, nuclei FROM slides ORDER BY 1").fetchall() == [
        ("a", 3),
        ("b", 2),
    ]
    res.close()


@pytest.mark.parametrize(
    ("sql", "shows"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", '"/etc/passwd"'),
        ("COPY (SELECT 1) TO '/anywhere/x.csv'", '"/anywhere/x.csv"'),
    ],
)
def test_cli_refusals_are_one_line(results_out: Path, sql: str, shows: str) -> None:
    res = runner.invoke(app, ["query", str(results_out), sql], env={"COLUMNS": "60"})
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert res.output.strip().count("\n") == 0 and "Traceback" not in res.output
    assert res.output.startswith("error: ") and "query refused" in res.output
    assert shows in res.output
    assert not Path("/anywhere").exists()


def test_to_writes_where_the_user_asks(results_out: Path, tmp_path: Path) -> None:
    dest = tmp_path / "elsewhere" / "per_slide.csv"
    sql = "SELECT slide_id, nucleus_id, area, geometry FROM nuclei ORDER BY slide_id, nucleus_id"
    res = runner.invoke(app, ["query", str(results_out), sql, "--to", str(dest)])
    assert res.exit_code == 0, res.output
    assert f"wrote {dest} (5 rows)" in res.output
    frame = pd.read_csv(dest)
    assert frame.slide_id.tolist() == ["a"] * 3 + ["b"] * 2
    assert frame.area.tolist() == [10.0, 20.0, 30.0, 10.0, 20.0]
    first = shapely.from_wkt(frame.geometry[0])  # outlines as WKT text, as DuckDB writes them
    assert shapely.equals(first, shapely.box(0, 0, 1, 1))
    # Parquet: geometry stays a geometry (GeoParquet), nested columns keep their types
    geo = tmp_path / "elsewhere" / "nuclei.parquet"
    res = runner.invoke(app, ["query", str(results_out), sql, "--to", str(geo)])
    assert res.exit_code == 0, res.output
    frame = gpd.read_parquet(geo)
    assert len(frame) == 5 and shapely.equals(frame.geometry.iloc[0], shapely.box(0, 0, 1, 1))
    table = tmp_path / "slides.parquet"
    with nucscale.open_results(results_out) as results:
        assert results.write("SELECT slide_id, nuclei_by_type, qc_flags FROM slides", table) == 2
    got = pq.read_table(table).to_pylist()
    assert got[0]["nuclei_by_type"] == [("nucleus", 3)] and got[0]["qc_flags"] == []
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


def test_readme_examples_run_in_the_confined_connection(results_out: Path) -> None:
    """Every SQL block of the README's query section runs (answers on a real run are checked
    in tests/pipeline/test_results.py)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Querying results") : text.index("### Exports")]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    with nucscale.open_results(results_out) as res:
        if not res.spatial:  # the bbox example needs ST_Intersects
            blocks = [b for b in blocks if "ST_" not in b]
        per_mm2 = res.sql(blocks[0]).fetchall()
        assert [(r[0], r[2]) for r in per_mm2] == [("a", 3), ("b", 2)]
        for sql in blocks[1:]:
            assert res.sql(sql).fetchall() is not None
        for line in re.findall(r"^res\.sql\((.*)\)\.df\(\)", text, re.M):
            assert len(res.sql(ast.literal_eval(line)).df()) >= 1  # the Python example
