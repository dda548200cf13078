"""Task order does not matter: any execution order gives byte-identical Parquet and labels.

The slide's tasks (ingest, segment, paint per tile; then finalize) are run in-process in an
order drawn by hypothesis, each stage shuffled (a stage only needs its dependencies, which the
stages before it provide, as on a cluster where any ready task may run first). The outputs
must equal those of the natural order byte for byte: every label chunk and the Parquet file's
data pages; its footer differs only in the provenance times (``nucscale.finished``), which
are compared after removing them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs
from nucscale.pipeline._plan import make_plan, settings_key
from nucscale.pipeline._tasks import (
    finalize_slide,
    ingest_tile,
    paint_chunk,
    segment_tile,
    tally_tasks,
)

pytestmark = pytest.mark.slow


def _run(slide: Path, out: Path, tile: int, seed: int | None) -> dict[str, str]:
    """Process ``slide`` task by task, each stage in a shuffled order (``None``: in order)."""
    inp = resolve_inputs([str(slide)])[0][0]
    cfg = Settings(segmenter="baseline", tile=tile, tissue="none")
    plan = make_plan(inp, cfg, str(out), settings_key(inp, cfg))
    rng = random.Random(seed)

    def order(items: list[tuple[int, int]]) -> list[tuple[int, int]]:
        items = list(items)
        if seed is not None:
            rng.shuffle(items)
        return items

    ingested = [ingest_tile(plan, *t) for t in order(plan.ingest_tiles())]
    segmented = [segment_tile(plan, *t) for t in order(list(plan.tiles))]
    painted = [paint_chunk(plan, *t) for t in order(plan.paint_tiles())]
    result = finalize_slide(plan, [tally_tasks(plan, ingested, segmented, painted)])
    assert result.nuclei > 50
    table = out / "nuclei" / f"slide_id={inp.slide_id}" / "part-0.parquet"
    files = sorted((out / "labels").rglob("*"))
    got = {str(p.relative_to(out)): p.read_bytes() for p in files if p.is_file()}
    schema = pq.read_schema(table)
    kv = dict(schema.metadata or {})
    assert kv.pop(b"nucscale.finished")
    got["table.metadata"] = repr(sorted(kv.items())).encode()
    got["table.schema"] = repr(schema.remove_metadata()).encode()
    got["table.rows"] = repr(pq.read_table(table).to_pylist()).encode()
    # data pages: everything before the footer (its length is in the last 8 bytes)
    raw = table.read_bytes()
    got["table.pages"] = raw[: len(raw) - 8 - int.from_bytes(raw[-8:-4], "little")]
    return {k: hashlib.sha256(v).hexdigest() for k, v in got.items()}


@pytest.fixture(scope="module")
def crop(cmu1_crop_tiff: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cmu1_crop_tiff(tmp_path_factory.mktemp("order") / "crop.tif", 700, 1300, 700, 520)


@pytest.fixture(scope="module")
def reference(crop: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, str]]:
    """Outputs of the natural task order, per tile size."""
    return {t: _run(crop, tmp_path_factory.mktemp(f"ref{t}"), t, None) for t in (128, 192)}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tile=st.sampled_from([128, 192]), seed=st.integers(0, 2**31))
def test_shuffled_execution_gives_identical_bytes(
    crop: Path,
    reference: dict[int, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
    tile: int,
    seed: int,
) -> None:
    got = _run(crop, tmp_path_factory.mktemp("shuffled"), tile, seed)
    assert sorted(got) == sorted(reference[tile])
    assert any(name.startswith("labels/") and "/c/" in name for name in got)  # chunks compared
    for name, data in reference[tile].items():
        assert got[name] == data, name
