"""The job scripts nucscale asks dask-jobqueue for, and the options it refuses (no scheduler
needed: the job classes render their scripts without submitting)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
import pytest
from dask_jobqueue.lsf import LSFJob
from dask_jobqueue.pbs import PBSJob
from dask_jobqueue.slurm import SLURMJob

from nucscale.cli._cluster_options import remote
from nucscale.cluster import JobOptions
from nucscale.cluster._jobqueue import job_kwargs, submit_reason
from nucscale.errors import ConfigError

LOGS = Path("/results/logs/workers")


def _script(job_cls: type, kind: str, options: JobOptions) -> str:
    kwargs = job_kwargs(kind, options, LOGS, None)
    kwargs.pop("scheduler_options")  # the cluster's, not the job's
    return str(job_cls(scheduler="tcp://10.0.0.1:8786", name="w", **kwargs).job_script())


def test_a_cpu_job_runs_one_single_threaded_worker_per_core() -> None:
    script = _script(SLURMJob, "slurm", JobOptions(cores=8, memory="32GiB", queue="short",
                                                   account="lab", walltime="02:00:00"))  # fmt: skip
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=32G" in script
    assert "#SBATCH -p short" in script and "#SBATCH -A lab" in script
    assert "#SBATCH -t 02:00:00" in script
    assert f"#SBATCH -e {LOGS}/dask-worker-%J.err" in script  # logs in OUT, not the cwd
    assert "--nthreads 1 --memory-limit 4.00GiB --nworkers 8" in script
    assert "export OMP_NUM_THREADS=1" in script
    assert "export MALLOC_ARENA_MAX=2" in script  # before the worker starts: glibc reads it once
    assert "export ARROW_DEFAULT_MEMORY_POOL=${ARROW_DEFAULT_MEMORY_POOL:-system}" in script
    # no statistical profiler, fewer wake-ups, unless the submitting shell says otherwise
    profile = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"
    assert f"export {profile}=${{{profile}:-False}}" in script
    tick = "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL"
    assert f"export {tick}=${{{tick}:-100ms}}" in script
    poll = "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL"
    assert f"export {poll}=${{{poll}:-250ms}}" in script
    monitor = "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL"
    assert f"export {monitor}=${{{monitor}:-2s}}" in script
    assert "distributed.cli.dask_worker" in script and "GPU" not in script


def test_a_gpu_job_runs_dask_cuda_worker_with_the_gpu_resource() -> None:
    script = _script(SLURMJob, "slurm", JobOptions(cores=4, memory="16GiB", gpu=True))
    assert "#SBATCH --gres=gpu:1" in script
    assert "-m dask_cuda.cli tcp://10.0.0.1:8786" in script
    assert "--nthreads 4" in script and "--resources GPU=1" in script
    pbs = _script(PBSJob, "pbs", JobOptions(cores=4, memory="16GiB", gpu=True))
    assert "#PBS -l ngpus=1" in pbs
    lsf = _script(LSFJob, "lsf", JobOptions(cores=4, memory="16GiB", gpu=True, account="p1"))
    assert '#BSUB -gpu "num=1"' in lsf and '#BSUB -P "p1"' in lsf


def test_site_settings_come_from_jobqueue_yaml_and_options_win() -> None:
    site = {
        "jobqueue.slurm.cores": 16,
        "jobqueue.slurm.memory": "64GiB",
        "jobqueue.slurm.queue": "compute",
        "jobqueue.slurm.job-extra-directives": ["--qos=normal"],
        "jobqueue.slurm.job-script-prologue": ["module load python"],
    }
    with dask.config.set(site):
        script = _script(SLURMJob, "slurm", JobOptions(extra=("--constraint=avx2",)))
        assert "#SBATCH --cpus-per-task=16" in script and "#SBATCH -p compute" in script
        assert "#SBATCH --qos=normal" in script and "#SBATCH --constraint=avx2" in script
        assert script.index("module load python") < script.index("OMP_NUM_THREADS")
        assert "#SBATCH --cpus-per-task=2" in _script(SLURMJob, "slurm", JobOptions(cores=2))


def test_cores_and_memory_must_be_known() -> None:
    with pytest.raises(ConfigError, match=r"--cores 8 --memory 32GiB, or cores/memory under "):
        job_kwargs("slurm", JobOptions(), LOGS, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (JobOptions(min_jobs=3, max_jobs=2), "--min-jobs 3 and --max-jobs 2"),
        (JobOptions(max_jobs=0), "--max-jobs 0"),
        (JobOptions(cores=0), "--cores must be at least 1"),
    ],
)
def test_impossible_job_counts_are_refused(options: JobOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.check()


def _remote(kind: str | None, **given: object) -> object:
    args: dict[str, object] = {
        "cores": None, "memory": None, "queue": None, "account": None, "walltime": None,
        "min_jobs": 1, "max_jobs": 4, "job_extra": None, "job_wait": 60.0, "gpu": False,
        "spec": None, "image": None,
    }  # fmt: skip
    return remote(kind, Path("out"), **{**args, **given})  # type: ignore[arg-type]


def test_cluster_options_need_cluster_and_a_known_kind() -> None:
    assert _remote(None) is None
    with pytest.raises(ConfigError, match=r"^--cores, --queue: only with --cluster$"):
        _remote(None, cores=4, queue="q")
    with pytest.raises(ConfigError, match="--cluster must be one of slurm, pbs, lsf, sge"):
        _remote("yarn")
    r = _remote("slurm", cores=4, memory="8GiB", job_extra=["--qos=low"], gpu=True)
    assert r.jobs == JobOptions(cores=4, memory="8GiB", gpu=True, extra=("--qos=low",))  # type: ignore[attr-defined]


def test_the_reason_of_a_refused_submission_is_its_stderr_on_one_line() -> None:
    text = (
        "Command exited with non-zero exit code.\nExit code: 1\nCommand:\nsbatch /tmp/x.sh\n"
        "stdout:\n\nstderr:\nsbatch: error: invalid partition specified: q\n"
        "sbatch: error: Batch job submission failed\n\n"
    )
    assert submit_reason(text) == (
        "sbatch: error: invalid partition specified: q; sbatch: error: Batch job submission failed"
    )


def test_workers_with_other_versions_are_named() -> None:
    from nucscale.cluster._versions import version_mismatch

    def pkgs(**over: str) -> dict[str, str]:
        base = {"python": "3.11.7.final.0", "nucscale": "0.1.0", "dask": "2026.8.0",
                "distributed": "2026.8.0", "cloudpickle": "3.1.3", "msgpack": "1.2.4",
                "numpy": "2.4.6", "torch": "2.13.0+cpu"}  # fmt: skip
        return {**base, **over}

    same = {"client": {"packages": pkgs()},
            "workers": {"tcp://a:1": {"packages": pkgs(torch="2.13.0+cu128",
                                                       python="3.11.9.final.0")}}}  # fmt: skip
    assert version_mismatch(same) is None  # a CUDA build on a GPU worker is the same torch
    other = {"client": {"packages": pkgs()},
             "workers": {"tcp://a:1": {"packages": pkgs(distributed="2026.7.1")}}}  # fmt: skip
    assert version_mismatch(other) == (
        "distributed 2026.8.0 here, 2026.7.1 on the worker tcp://a:1"
    )


def test_the_example_jobqueue_yaml_makes_a_job_script() -> None:
    import yaml

    example = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "jobqueue.yaml"
    site = yaml.safe_load(example.read_text())  # merged over the defaults, as Dask loads it
    with dask.config.set(dask.config.merge(dask.config.config, site)):
        script = _script(SLURMJob, "slurm", JobOptions())
    assert "#SBATCH --cpus-per-task=16" in script and "#SBATCH --mem=64G" in script
    assert "#SBATCH -p compute" in script and "#SBATCH -A my-lab" in script
    assert "module load python/3.11" in script and "--nworkers 16" in script


def test_kubernetes_without_the_operator_client_is_one_line(
    cmu1_svs: Path, tmp_path: Path, nucscale_cli: Callable[..., Any]
) -> None:
    try:  # dask-kubernetes is an extra the tests do not install
        import dask_kubernetes  # noqa: F401

        pytest.skip("dask-kubernetes is installed here")
    except ImportError:
        pass
    res = nucscale_cli(
        "run", str(cmu1_svs), "--out", str(tmp_path / "o"), "--cluster", "kubernetes",
        "--model", "baseline", "--dashboard", ":0",
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "error: --cluster kubernetes needs dask-kubernetes: pip install 'nucscale[kubernetes]'"
    )
