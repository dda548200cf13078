"""deploy/kubernetes against the Kubernetes API's own schemas (kubernetes-validate, offline,
strict: an unknown field fails). No cluster runs here: what a real cluster would add (the
operator's CRD, scheduling, the volume) is not tested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nucscale import __version__
from nucscale.cluster import JobOptions
from nucscale.cluster._kubernetes import load_spec, worker_resources
from nucscale.errors import ConfigError

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSION = kubernetes_validate.latest_version()
MANIFESTS = sorted(K8S.glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_manifests_are_there() -> None:
    kinds = {(p.name, d["kind"]) for p in MANIFESTS for d in _documents(p)}
    assert kinds == {
        ("storage.yaml", "PersistentVolumeClaim"),
        ("scheduler.yaml", "Deployment"),
        ("scheduler.yaml", "Service"),
        ("workers-cpu.yaml", "Deployment"),
        ("workers-gpu.yaml", "Deployment"),
        ("run-job.yaml", "Job"),
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_against_the_api_schema(path: Path) -> None:
    for doc in _documents(path):
        _validate(doc)


def test_the_validation_can_fail() -> None:
    doc = _documents(K8S / "workers-cpu.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo of "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


def test_gpu_workers_ask_for_a_gpu_and_advertise_the_resource() -> None:
    pod = _documents(K8S / "workers-gpu.yaml")[0]["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["args"][:3] == ["dask", "cuda", "worker"]
    assert "GPU=1" in worker["args"] and worker["image"].endswith(f":{__version__}-cuda")


def test_every_pod_mounts_the_shared_volume_and_runs_this_version() -> None:
    for path in MANIFESTS:
        for doc in _documents(path):
            if doc["kind"] not in {"Deployment", "Job"}:
                continue
            pod = doc["spec"]["template"]["spec"]
            image = pod["containers"][0]["image"]
            assert image.rsplit(":", 1)[1] in {f"{__version__}-cpu", f"{__version__}-cuda"}
            if "scheduler" not in doc["metadata"]["name"]:
                claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                          if "persistentVolumeClaim" in v]  # fmt: skip
                assert claims == ["nucscale-data"], path


def test_the_operator_cluster_spec_holds_valid_pods_and_service() -> None:
    """The DaskCluster's CRD schema is the operator's (not in the API schemas): its pod specs
    and service spec are validated as the Pod and Service they become."""
    spec = load_spec(K8S / "operator" / "daskcluster.yaml")["spec"]
    for part in ("worker", "scheduler"):
        _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": part},
                   "spec": spec[part]["spec"]})  # fmt: skip
    _validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": spec["scheduler"]["service"]})  # fmt: skip


def test_a_file_that_is_not_a_dask_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage.yaml: not a DaskCluster resource"):
        load_spec(K8S / "storage.yaml")
    with pytest.raises(ConfigError, match=r"scheduler.yaml: cannot read the cluster spec: [^\n]+$"):
        load_spec(K8S / "scheduler.yaml")  # two documents: one line says why
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the cluster spec"):
        load_spec(tmp_path / "missing.yaml")


def test_pod_resources_from_the_job_options() -> None:
    assert worker_resources(JobOptions(cores=4, memory="16GiB", gpu=True)) == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    }
