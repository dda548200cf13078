"""Write deploy/requirements-lock.txt: the exact versions of nucscale's runtime dependencies
(pyproject.toml's, and every package they bring, transitively), read from the environment the
tests passed in. scripts/setup.sh and deploy/Dockerfile install under it as a constraint, so a
client and the workers of an image agree (Dask refuses mismatched versions, and nucscale names
the first difference). torch is left out: its build (CPU or CUDA) is chosen per machine and
pinned on its own (torch==2.13.0).

dask and distributed are held at the version dask-cuda pins (through rapids-dask-dependency:
dask-cuda 26.10 wants dask 2026.7.1), or the CUDA image and a GPU set-up could not install
under the lock; check with
``pip install --dry-run 'dask-cuda>=24.8' -c deploy/requirements-lock.txt``
before moving them.

    .venv/bin/python scripts/lock.py            # rewrite the lock
    .venv/bin/python scripts/lock.py --check    # exit 1 when the environment differs from it
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "deploy" / "requirements-lock.txt"
#: torch's build (CPU or CUDA) is chosen per machine and pinned by scripts/setup.sh and the
#: Dockerfile; its own dependencies (a CUDA build's libraries) are not followed.
UNLOCKED = {"torch", "nucscale"}


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = dict(default_environment())
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def closure(roots: list[str]) -> dict[str, str]:
    """name -> installed version of every package the requirements ``roots`` bring,
    transitively."""
    found: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = []
    for line in roots:
        req = Requirement(line)
        if _wanted(req, set()) and canonicalize_name(req.name) not in UNLOCKED:
            todo.append((req.name, set(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional dependency not installed here
        found[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if _wanted(req, extras) and canonicalize_name(req.name) not in UNLOCKED:
                todo.append((req.name, set(req.extras)))
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    head = (
        "# nucscale's runtime dependencies, exact (scripts/lock.py; torch is pinned on its own).\n"
        "# A constraint of scripts/setup.sh and deploy/Dockerfile: client and workers agree.\n"
    )
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())


def main() -> int:
    project = tomllib.loads((LOCK.parents[1] / "pyproject.toml").read_text())["project"]
    text = render(closure(project["dependencies"]))
    if "--check" in sys.argv[1:]:
        if not LOCK.exists() or LOCK.read_text() != text:
            print(f"{LOCK} differs from this environment: run scripts/lock.py", file=sys.stderr)
            return 1
        return 0
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
