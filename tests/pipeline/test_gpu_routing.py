"""GPU routing, tested on the CPU: a real `dask scheduler` with one worker that advertises a
(fake) ``GPU`` resource and one that does not. The network's forward tasks must run only on
the GPU worker, every other task on the CPU worker, and the output must equal a plain local
run's (the resource changes where tasks run, never what they compute)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.store import nuclei_path, open_labels

pytestmark = pytest.mark.slow

SETTINGS = Settings(tile=512)  # the default U-Net, tissue detection on


def test_forward_tasks_run_on_the_gpu_worker_and_the_rest_elsewhere(
    cmu1_crop_tiff: Callable[..., Path], start_dask: Callable[..., Any], tmp_path: Path
) -> None:
    from distributed import Client, get_task_stream

    crop = cmu1_crop_tiff(tmp_path / "crop.tif", 0, 1400, 1100, 900)  # tissue and glass
    slides, rejected = resolve_inputs([str(crop)])
    sid = slides[0].slide_id
    with start_dask(tmp_path, [["--resources", "GPU=1"], []]) as addr, Client(addr) as client:
        gpu = [a for a, w in client.scheduler_info()["workers"].items() if w["resources"]]
        with get_task_stream(client) as stream:
            rows = run_cohort(client, slides, rejected, SETTINGS, tmp_path / "routed")
        assert rows[0].status == "done", rows[0].error
    where: dict[str, set[str]] = {}
    for rec in stream.data:
        stage = str(rec["key"]).split("-", 1)[0]
        where.setdefault(stage, set()).add(rec["worker"])
    assert {"forward", "instances", "ingest", "paint", "tally", "finalize"} <= set(where), where
    assert where["forward"] == set(gpu), where
    for stage in ("instances", "ingest", "paint", "tally", "finalize"):
        assert gpu[0] not in where[stage], (stage, where)

    with get_client(workers=2, dashboard_address=":0") as client:
        local = run_cohort(client, slides, rejected, SETTINGS, tmp_path / "local")
    assert local[0].nuclei == rows[0].nuclei and (rows[0].nuclei or 0) > 200
    a = pq.read_table(nuclei_path(tmp_path / "routed", sid))
    b = pq.read_table(nuclei_path(tmp_path / "local", sid))
    assert a.equals(b)
    assert (
        open_labels(tmp_path / "routed", sid)[:] == open_labels(tmp_path / "local", sid)[:]
    ).all()
