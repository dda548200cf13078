"""End to end on the real CMU-1 slide: LocalCluster, a real scheduler + workers, a bad cohort."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from skimage.measure import regionprops_table

from nucscale.cluster import get_client
from nucscale.config import Settings
from nucscale.io import open_slide
from nucscale.pipeline import resolve_inputs, run_cohort
from nucscale.store import open_labels, read_manifest, read_metadata
from nucscale.tiling import low_res_image, tissue_mask

pytestmark = pytest.mark.slow

CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]

SETTINGS = Settings(segmenter="baseline", tile=512)


def test_table_is_complete_and_plausible(cmu1_run: Path, cmu1_svs: Path) -> None:
    table = ds.dataset(cmu1_run / "nuclei", partitioning="hive").to_table()
    df = table.to_pandas()
    assert set(df["slide_id"]) == {"CMU-1-Small-Region"}
    # 0.64 mm² of skin: 1,000-8,000 nuclei/mm² is the plausible range for dermis + epidermis
    # (the baseline found 2,061 when this was written, ~3,200/mm²)
    assert 640 < len(df) < 5_100, len(df)
    assert df["nucleus_id"].is_unique
    assert df["area"].median() == pytest.approx(35, rel=0.6)  # µm², typical nucleus
    assert (df["type_name"] == "nucleus").all()
    meta = read_metadata(next((cmu1_run / "nuclei").rglob("part-0.parquet")))
    assert meta["segmenter"] == "baseline"
    assert float(meta["mpp"]) == pytest.approx(0.499)
    assert meta["tile_size"] == "512" and int(meta["halo"]) > 0
    row = read_manifest(cmu1_run)[("CMU-1-Small-Region", str(cmu1_svs))]
    assert row.status == "done" and row.nuclei == len(df)
    assert 20 <= (row.tiles or 0) <= 30  # of 30, the rest is glass
    assert 0.5 < (row.tissue_mm2 or 0) < 0.8  # ~39% of the 1.64 mm² region


def test_centroids_lie_in_tissue(cmu1_run: Path, cmu1_svs: Path) -> None:
    df = pq.read_table(next((cmu1_run / "nuclei").rglob("part-0.parquet"))).to_pandas()
    with open_slide(cmu1_svs) as s:
        thumb, dsf = low_res_image(s, 2048)
    mask, _ = tissue_mask(thumb)
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(mask, iterations=2)  # a nucleus at the tissue edge
    ys = np.clip((df["centroid_y"] / dsf).astype(int), 0, mask.shape[0] - 1)
    xs = np.clip((df["centroid_x"] / dsf).astype(int), 0, mask.shape[1] - 1)
    assert near[ys, xs].mean() > 0.99


def test_features_equal_scikit_image_on_written_labels(cmu1_run: Path) -> None:
    df = pq.read_table(next((cmu1_run / "nuclei").rglob("part-0.parquet"))).to_pandas()
    labels = open_labels(cmu1_run, "CMU-1-Small-Region")[:]
    assert labels.shape == (2967, 2220)
    present = np.unique(labels[labels > 0])
    # owned nuclei never overlap (translation-consistent segmenter), so painting loses none
    assert set(present) == set(df["nucleus_id"])
    props = pd.DataFrame(
        regionprops_table(
            labels,
            properties=("label", "area", "perimeter", "solidity", "eccentricity", "centroid"),
        )
    ).set_index("label")
    mpp = 0.499
    joined = df.set_index("nucleus_id").join(props, how="inner", suffixes=("", "_sk"))
    # every nucleus is painted whole, so its features are scikit-image's on the label image
    np.testing.assert_allclose(joined["area"], joined["area_sk"] * mpp**2, rtol=1e-12)
    whole = joined
    assert len(whole) == len(df)
    np.testing.assert_allclose(whole["perimeter"], whole["perimeter_sk"] * mpp, rtol=1e-9)
    np.testing.assert_allclose(whole["solidity"], whole["solidity_sk"], rtol=1e-9)
    np.testing.assert_allclose(
        whole["eccentricity"], whole["eccentricity_sk"], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(whole["centroid_x"], whole["centroid-1"], atol=1e-6)
    np.testing.assert_allclose(whole["centroid_y"], whole["centroid-0"], atol=1e-6)


def _warmed(dask_worker: Any) -> bool:
    """Whether the cohort had this worker load its tasks' libraries when it started."""
    return "nucscale-warm-imports" in dask_worker.plugins


def test_rerun_skips_a_finished_slide(cmu1_run: Path, cmu1_svs: Path) -> None:
    before = (
        (cmu1_run / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet").stat().st_mtime_ns
    )
    slides, rejected = resolve_inputs([str(cmu1_svs)])
    with get_client(workers=1, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, SETTINGS, cmu1_run)
        assert set(client.run(_warmed).values()) == {False}  # nothing to plan: nothing loaded
    assert rows[0].status == "done"
    after = (
        (cmu1_run / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet").stat().st_mtime_ns
    )
    assert before == after


def test_a_worker_lost_while_it_loads_its_libraries_does_not_stop_the_run(
    cmu1_run: Path, cmu1_svs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that leaves while the cohort has the workers load their libraries (a job
    cancelled then) fails the plugin's broadcast; the slide is still done, the same as before."""
    from distributed import Client
    from distributed.comm import CommClosedError

    from nucscale.cluster._warm import WarmImports

    register = Client.register_plugin

    def broken(self: Client, plugin: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(plugin, WarmImports):
            raise CommClosedError("in <TCP (closed) register_worker_plugin>: Stream is closed")
        return register(self, plugin, *args, **kwargs)

    slides, rejected = resolve_inputs([str(cmu1_svs)])
    with get_client(workers=1, dashboard_address=":0") as client:
        monkeypatch.setattr(Client, "register_plugin", broken)
        rows = run_cohort(client, slides, rejected, SETTINGS, tmp_path)
    assert rows[0].status == "done", rows[0].error
    part = "nuclei/slide_id=CMU-1-Small-Region/part-0.parquet"
    assert pq.read_table(tmp_path / part).equals(pq.read_table(cmu1_run / part))


def test_new_settings_reuse_the_tile_store(cmu1_run: Path, cmu1_svs: Path, tmp_path: Path) -> None:
    """A rerun with other segmentation settings recomputes nuclei but not the ingested tiles."""
    out = tmp_path / "copy"
    shutil.copytree(cmu1_run, out)  # keep the module's run untouched for the other tests
    part = out / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet"
    before = pq.read_table(part)
    slides, rejected = resolve_inputs([str(cmu1_svs)])
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(client, slides, rejected, SETTINGS.replace(halo=130), out)
        assert list(client.run(_warmed).values()) == [True, True]
    assert rows[0].status == "done"
    assert rows[0].ingest_s == 0.0  # every tile chunk was already in the store
    assert (rows[0].segment_s or 0) > 0
    assert read_metadata(part)["halo"] == "130"
    # a halo above the minimum changes nothing: the segmenter is translation consistent
    assert pq.read_table(part).equals(before)


def test_resampled_analysis_keeps_physical_units(
    cmu1_run: Path, cmu1_svs: Path, tmp_path: Path
) -> None:
    """At 1 µm/px (level 0 shrunk ~2x) nuclei keep their µm sizes and level-0 positions."""
    slides, rejected = resolve_inputs([str(cmu1_svs)])
    with get_client(workers=2, dashboard_address=":0") as client:
        rows = run_cohort(
            client, slides, rejected, Settings(segmenter="baseline", tile=512, mpp=1.0), tmp_path
        )
    assert rows[0].status == "done", rows[0].error
    assert rows[0].analysis_mpp == 1.0
    coarse = pq.read_table(tmp_path / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet")
    fine = pq.read_table(cmu1_run / "nuclei" / "slide_id=CMU-1-Small-Region" / "part-0.parquet")
    c, f = coarse.to_pandas(), fine.to_pandas()
    labels = open_labels(tmp_path, "CMU-1-Small-Region")
    assert labels.shape == (round(2967 * 0.499), round(2220 * 0.499))
    assert 0.3 * len(f) < len(c) < 1.5 * len(f)  # small nuclei fall below 6 µm² at 1 µm/px
    assert c["area"].median() == pytest.approx(f["area"].median(), rel=0.5)  # µm², not px
    assert c["centroid_x"].max() <= 2220 and c["centroid_y"].max() <= 2967  # level-0 px
    assert c["centroid_x"].max() > 1800
    np.testing.assert_allclose(c["centroid_x_um"], c["centroid_x"] * 0.499, rtol=1e-9)


def test_cli_on_a_real_scheduler_matches_local_run(
    dask_cluster: str, cmu1_svs: Path, cmu1_run: Path, tmp_path: Path, nucscale_cli: CliRunner
) -> None:
    out = tmp_path / "remote"
    res = nucscale_cli(
        "run",
        str(cmu1_svs),
        "--out",
        str(out),
        "--scheduler",
        dask_cluster,
        "--tile",
        "512",
        "--model",
        "baseline",
    )
    assert res.returncode == 0, res.stderr
    assert "1 done, 0 failed" in res.stderr
    part = "nuclei/slide_id=CMU-1-Small-Region/part-0.parquet"
    remote = pq.read_table(out / part)
    local = pq.read_table(cmu1_run / part)
    assert remote.equals(local)  # same graph, same numbers, whatever the cluster
    a = open_labels(out, "CMU-1-Small-Region")[:]
    b = open_labels(cmu1_run, "CMU-1-Small-Region")[:]
    assert np.array_equal(a, b)


def test_cohort_with_bad_files(
    openslide_fixtures: Path, cmu1_svs: Path, tmp_path: Path, baseline_cli: CliRunner
) -> None:
    cohort = tmp_path / "in"
    cohort.mkdir()
    (cohort / "empty.svs").write_bytes(b"")
    (cohort / "truncated.svs").write_bytes(cmu1_svs.read_bytes()[:4096])
    (cohort / "notes.svs").write_text("this is not a slide\n")
    (cohort / "nompp.png").write_bytes((openslide_fixtures / "boxes.png").read_bytes())
    csv = tmp_path / "cohort.csv"
    lines = ["path,slide_id"]
    lines += [f"{openslide_fixtures / 'small.svs'},good-small"]
    lines += [f"{openslide_fixtures / 'unreadable.svs'},corrupt"]
    lines += [f"{openslide_fixtures / 'unopenable.tiff'},not-a-slide"]
    lines += [
        f"{cohort / n},{Path(n).stem}"
        for n in ("empty.svs", "truncated.svs", "notes.svs", "nompp.png")
    ]
    lines += [f"{cohort / 'missing.svs'},missing", f"{openslide_fixtures / 'small.svs'},../escape"]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = baseline_cli(csv, out, 2)
    assert res.returncode == 1, res.stderr
    rows = {sid: r for (sid, _), r in read_manifest(out).items()}
    assert rows["good-small"].status == "done", rows["good-small"].error
    failed = {sid: r.error or "" for sid, r in rows.items() if r.status == "failed"}
    assert set(failed) == {
        "corrupt",
        "not-a-slide",
        "empty",
        "truncated",
        "notes",
        "nompp",
        "missing",
        "small",
    }, failed
    assert "unreadable.svs" in failed["corrupt"]
    assert "empty file" in failed["empty"]
    assert "--mpp" in failed["nompp"]
    assert "no such file" in failed["missing"]
    assert "not allowed" in failed["small"]
    for sid, msg in failed.items():
        assert "\n" not in msg and "Traceback" not in msg, (sid, msg)
    # nothing was written outside --out, and nothing partial inside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv", "in", "out"]
    assert not [p for p in out.rglob("*.tmp")]
