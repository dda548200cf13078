"""Client and workers must run the same packages: a graph pickled by one Dask, cloudpickle or
nucscale and run by another fails in ways that do not name the cause, or gives other numbers.

Dask itself only warns (in a table) when versions differ; nucscale refuses, naming the first
difference in one line. torch is compared without its build tag (``2.13.0+cpu`` on the client,
``2.13.0+cu128`` on a GPU worker is the intended set-up); Python by major.minor.
"""

from __future__ import annotations

from typing import Any

from nucscale.errors import ConfigError

#: The packages whose versions must agree between the client and every worker.
CHECKED = ("python", "nucscale", "dask", "distributed", "cloudpickle", "msgpack", "numpy", "torch")


def _normal(name: str, version: str | None) -> str | None:
    if version is None:
        return None
    if name == "python":
        return ".".join(version.split(".")[:2])
    return version.split("+")[0]


def version_mismatch(versions: dict[str, Any]) -> str | None:
    """The first difference between the client's packages and a worker's, as a phrase; None
    when they agree (``versions``: what ``Client.get_versions`` returns)."""
    mine = versions.get("client", {}).get("packages", {})
    for address, info in sorted(versions.get("workers", {}).items()):
        theirs = info.get("packages", {}) if isinstance(info, dict) else {}
        for name in CHECKED:
            a, b = _normal(name, mine.get(name)), _normal(name, theirs.get(name))
            if a != b:
                return f"{name} {a or 'missing'} here, {b or 'missing'} on the worker {address}"
    return None


def check_versions(client: Any) -> None:
    """Refuse to run when a worker connected now runs other versions than this client."""
    found = version_mismatch(client.get_versions(packages=["nucscale", "torch"]))
    if found is not None:
        raise ConfigError(
            f"the workers run other packages than this client: {found}; install the same "
            "versions on both (deploy/requirements-lock.txt, or the nucscale image of this version)"
        )
