"""Resolving inputs: files, globs, CSV manifests, slide id safety and duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from nucscale.errors import InputError
from nucscale.io import ReadOptions
from nucscale.pipeline import check_slide_id, resolve_inputs


def test_files_globs_and_missing(tmp_path: Path) -> None:
    for name in ("a.svs", "b.svs", "c.tif"):
        (tmp_path / name).write_bytes(b"x")
    slides, rejected = resolve_inputs([str(tmp_path / "*.svs"), str(tmp_path / "missing.svs")])
    assert [s.slide_id for s in slides] == ["a", "b", "missing"]
    assert rejected == []
    with pytest.raises(InputError, match="matches no file"):
        resolve_inputs([str(tmp_path / "*.ndpi")])


def test_csv_manifest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.png").write_bytes(b"x")
    csv = tmp_path / "cohort.csv"
    csv.write_text(
        "path,slide_id,mpp\n"
        "sub/x.png,case-1,0.25\n"
        "sub/x.png,case-2,\n"
        "sub/x.png,../evil,\n"
        "sub/x.png,case-1,\n"
        "sub/x.png,case-3,abc\n"
    )
    slides, rejected = resolve_inputs([str(csv)], mpp=0.5)
    # a CSV mpp overrides the file's; the command-line mpp is only a fallback
    assert [(s.slide_id, s.mpp, s.default_mpp) for s in slides] == [
        ("case-1", 0.25, 0.5),
        ("case-2", None, 0.5),
    ]
    assert slides[0].path == str(tmp_path / "sub" / "x.png")
    reasons = [r.reason for r in rejected]
    assert len(reasons) == 3
    assert "not allowed" in reasons[0]
    assert (
        "duplicate slide id 'case-1'" in reasons[2] or "duplicate slide id 'case-1'" in reasons[1]
    )
    assert any("not a positive number" in r for r in reasons)


def test_csv_without_path_column(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("file\nx.svs\n")
    with pytest.raises(InputError, match="'path' column"):
        resolve_inputs([str(csv)])


@pytest.mark.parametrize("bad", ["", "..", ".hidden", "a/b", "a\\b", "x=y", "tab\there", "a" * 201])
def test_unsafe_slide_ids_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        check_slide_id(bad, "cohort.csv")


@pytest.mark.parametrize("good", ["CMU-1", "case 7", "Präparat_ü", "a.b"])
def test_safe_slide_ids(good: str) -> None:
    assert check_slide_id(good, "cohort.csv") == good


def test_default_ids_are_sanitised(tmp_path: Path) -> None:
    slides, _ = resolve_inputs([str(tmp_path / ".x=y.svs")])
    assert slides[0].slide_id == "x_y"


def test_settings_from_env_survive_cli_defaults() -> None:
    from nucscale.config import Settings

    s = Settings.from_env({"NUCSCALE_HALO": "200", "NUCSCALE_TILE": "512"})
    kept = s.replace(halo=None, tile=None, mpp=0.25)
    assert (kept.halo, kept.tile, kept.mpp) == (200, 512, 0.25)


def test_ome_zarr_folders_are_named_without_their_suffix(tmp_path: Path) -> None:
    for name in ("a.ome.zarr", "b.zarr", "c.ome.ZARR"):
        (tmp_path / name).mkdir()
    slides, rejected = resolve_inputs(
        [str(tmp_path / n) for n in ("a.ome.zarr", "b.zarr", "c.ome.ZARR")]
    )
    assert not rejected
    assert [s.slide_id for s in slides] == ["a", "b", "c"]
    (tmp_path / "d.tif").write_bytes(b"")
    (slide,), _ = resolve_inputs([str(tmp_path / "d.tif")])
    assert slide.slide_id == "d"


def test_channel_column_sets_the_read_options_of_its_row(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text("path,channel\na.tif,DAPI\nb.tif,\n")
    slides, _ = resolve_inputs([str(csv)], options=ReadOptions(channel="2", z="max"))
    assert [(s.options.channel, s.options.z) for s in slides] == [("DAPI", "max"), ("2", "max")]
