"""The workflow on a real (one-node, localhost) SLURM cluster through profiles/slurm.

A cluster is started for this module by ``tests/slurm/local_cluster.py``:
munged, slurmctld and slurmd in the foreground, no cgroups, no accounting
database, a ``cpu`` and a ``gpu`` partition named like the profile's
placeholders, and three fake GPUs. Snakemake submits through its own SLURM
executor (``executor: slurm`` in the profile), with the profile unchanged; only
two executor settings that depend on the cluster's accounting database are
added (:data:`LOCAL_CLUSTER_OPTIONS`). Three runs overlap to save time:

- the demo workflow on a tiny phantom cohort on SLURM, one segmentation job
  cancelled while it runs, and the same workflow run locally; their
  segmentations, measurements, responses and cohort.csv must be equal;
- a toy workflow (``tests/slurm/Snakefile``) whose jobs are killed at their time
  limit, cancelled and requeued; each must run again and end with the output of
  an undisturbed run.

Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge
(``.ci/slurm-setup.sh`` installs them); skips with the reason otherwise, or
fails when ``LIVERBURDEN_REQUIRE_SLURM=1`` (CI) says SLURM must be there.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from _segment_fixtures import TINY_BUNDLE
from _workflow_fixtures import write_config

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = REPO_ROOT / "profiles" / "slurm"
TOY_SNAKEFILE = REPO_ROOT / "tests" / "slurm" / "Snakefile"
SNAKEFILE = REPO_ROOT / "Snakefile"
#: The segmentation model of the demo runs: the tests' tiny bundle (another bundle for
#: trying things: LIVERBURDEN_SLURM_TEST_MODEL=folder).
TEST_MODEL = Path(os.environ.get("LIVERBURDEN_SLURM_TEST_MODEL", TINY_BUNDLE))

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _load_local_cluster():
    spec = importlib.util.spec_from_file_location(
        "local_cluster", REPO_ROOT / "tests" / "slurm" / "local_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module
    spec.loader.exec_module(module)
    return module


local_cluster = _load_local_cluster()

#: Executor settings for this cluster, on top of the profile. Without an accounting
#: database ``sacct`` answers nothing, so job states come from ``squeue`` (finished jobs
#: stay listed for MinJobAge=600 s); the first status check comes after 2 s instead
#: of 40 s, since jobs here start at once.
LOCAL_CLUSTER_OPTIONS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
)

#: Bound of one Snakemake run in these tests, in seconds.
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running one-node cluster (a ``LocalSlurmCluster``), stopped after the module."""
    reason = local_cluster.missing_requirements()
    if reason:
        if os.environ.get("LIVERBURDEN_REQUIRE_SLURM") == "1":
            pytest.fail(f"LIVERBURDEN_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    # 8 CPUs and 3 GPUs on a 2-core host without GPU (config_overrides, fake devices):
    # the toy's jobs, which mostly sleep, must not hold back the demo workflow's
    # segmentation jobs (2 threads and 1 GPU each), which may then run side by side.
    cluster = local_cluster.LocalSlurmCluster(
        tmp_path_factory.mktemp("slurm"), cpus=8, memory_mb=16000, gpus=3
    )
    try:
        cluster.start()
    except local_cluster.HostSlurmConfiguredError as error:
        cluster.stop()
        pytest.skip(str(error))
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


def _environment(cluster) -> dict[str, str]:
    """The cluster's environment with this Python's bin folder first on PATH, as after
    activating the virtual environment (jobs inherit it: sbatch --export=ALL)."""
    env = cluster.environment()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SLURM_JOB_ID", None)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _start_snakemake(
    cluster, snakefile: Path, workdir: Path, *options: str
) -> subprocess.Popen[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        *options,
    ]
    with (workdir / "snakemake.out").open("w") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=_environment(cluster),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )


def snakemake_on_slurm(
    cluster, snakefile: Path, workdir: Path, *options: str
) -> subprocess.Popen[str]:
    """Start ``snakemake --workflow-profile profiles/slurm`` in ``workdir`` (log: snakemake.out)."""
    return _start_snakemake(
        cluster,
        snakefile,
        workdir,
        "--workflow-profile",
        str(PROFILE),
        *LOCAL_CLUSTER_OPTIONS,
        *options,
    )


def snakemake_locally(
    cluster, snakefile: Path, workdir: Path, *options: str
) -> subprocess.Popen[str]:
    """Start the documented single-GPU-workstation run: ``--cores 2 --resources gpu=1``."""
    return _start_snakemake(
        cluster, snakefile, workdir, "--cores", "2", "--resources", "gpu=1", *options
    )


def finish(process: subprocess.Popen[str], workdir: Path, timeout_s: float = RUN_TIMEOUT_S) -> str:
    """Wait for a Snakemake run; fail with the end of its log unless it succeeded."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(process)
    output = (workdir / "snakemake.out").read_text(errors="replace")
    assert process.returncode == 0, f"snakemake exit {process.returncode}:\n{output[-6000:]}"
    return output


def stop(process: subprocess.Popen[str]) -> None:
    """End a Snakemake run still going (a failed test); Snakemake cancels its SLURM jobs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 120) -> object:
    """Poll ``condition`` every 0.5 s until it returns something true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def jobs_of_rule(cluster, rule: str, workdir: Path) -> list[dict[str, str]]:
    """SLURM jobs of ``rule`` (named in the comment the executor sets) submitted by the
    run in ``workdir``, oldest first."""
    return sorted(
        (
            job
            for job in cluster.jobs()
            if job.get("WorkDir") == str(workdir)
            and (
                job.get("Comment") == f"rule_{rule}"
                or job.get("Comment", "").startswith(f"rule_{rule}_wildcards_")
            )
        ),
        key=lambda job: int(job["JobId"]),
    )


def attempt_lines(workdir: Path, name: str) -> list[str]:
    """Lines the toy's ``restartable`` rule appends at each start of job ``name``."""
    path = workdir / "restartable" / f"{name}.attempts"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def running_job(cluster, workdir: Path, name: str, starts: int) -> dict[str, str]:
    """The job of ``restartable`` ``name`` once it has started ``starts`` times."""

    def started() -> dict[str, str] | None:
        lines = attempt_lines(workdir, name)
        if len(lines) != starts:
            return None
        job = cluster.job(lines[-1].split()[1])
        return job if job.get("JobState") == "RUNNING" else None

    return wait_for(started, f"start {starts} of restartable job {name!r}")


class Choreography(threading.Thread):
    """A function run beside the workflows (killing their jobs); ``result()`` re-raises."""

    def __init__(self, function: Callable[[], dict[str, str]]) -> None:
        super().__init__(daemon=True)
        self._function = function
        self._result: dict[str, str] | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._result = self._function()
        except BaseException as error:  # re-raised in the test's thread
            self._error = error

    def result(self, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, str]:
        self.join(timeout_s)
        if self.is_alive():
            raise AssertionError("the job-killing thread did not finish")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


TOY_WORK_SECONDS = 12


def kill_toy_jobs(cluster, workdir: Path) -> dict[str, str]:
    """Kill the toy's `restartable` jobs as a scheduler does; returns the killed job ids.

    `limit`, attempt 1: SLURM kills it at its (moved) time limit -> TIMEOUT; Snakemake
    retries with twice the time; attempt 2 is requeued while running (preemption) and
    SLURM runs it again. `cancel`, attempt 1: scancel -> CANCELLED; attempt 2 runs.
    """
    limit_first = running_job(cluster, workdir, "limit", 1)
    cluster.end_now(limit_first["JobId"])
    cancel_first = running_job(cluster, workdir, "cancel", 1)
    cluster.cancel(cancel_first["JobId"])
    limit_second = running_job(cluster, workdir, "limit", 2)
    cluster.requeue(limit_second["JobId"])
    return {
        "limit_first": limit_first["JobId"],
        "limit_second": limit_second["JobId"],
        "cancel_first": cancel_first["JobId"],
    }


@dataclass
class Run:
    process: subprocess.Popen[str]
    workdir: Path
    choreography: Choreography | None = None


@pytest.fixture(scope="module")
def toy_run(slurm_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The toy workflow on SLURM, its jobs killed by a thread while it runs."""
    workdir = tmp_path_factory.mktemp("toy").resolve()
    process = snakemake_on_slurm(
        slurm_cluster, TOY_SNAKEFILE, workdir, "--config", f"work_seconds={TOY_WORK_SECONDS}"
    )
    run = Run(process, workdir, Choreography(lambda: kill_toy_jobs(slurm_cluster, workdir)))
    yield run
    stop(process)


def test_toy_workflow_on_slurm_partitions_gpu_and_restarts(
    slurm_cluster, toy_run: Run, demo_runs: dict[str, Run] | None
) -> None:
    """CPU rules go to the CPU partition, segment to the GPU partition with one GPU; jobs
    the scheduler kills (time limit, scancel, preemption) run again and end with the
    output of an undisturbed run. (``demo_runs`` is only started here, to overlap.)"""
    workdir = toy_run.workdir
    assert toy_run.choreography is not None
    killed = toy_run.choreography.result()
    finish(toy_run.process, workdir)

    expected = "".join(f"{i}\n" for i in range(1, TOY_WORK_SECONDS + 1))
    for name in ("limit", "cancel"):
        assert (workdir / "restartable" / f"{name}.txt").read_text(encoding="utf-8") == expected
    assert not list(workdir.rglob("*.part"))
    jobs = {job["JobId"]: job for job in jobs_of_rule(slurm_cluster, "restartable", workdir)}
    limit_ids = [line.split()[1] for line in attempt_lines(workdir, "limit")]
    assert limit_ids == [killed["limit_first"], killed["limit_second"], killed["limit_second"]]
    assert jobs[limit_ids[0]]["JobState"] == "TIMEOUT"
    assert jobs[limit_ids[1]]["JobState"] == "COMPLETED"
    assert jobs[limit_ids[1]]["TimeLimit"] == "00:04:00"  # attempt 2: 2 x 2 minutes
    assert jobs[limit_ids[1]]["Restarts"] == "1"
    cancel_ids = [line.split()[1] for line in attempt_lines(workdir, "cancel")]
    assert len(cancel_ids) == 2 and cancel_ids[0] == killed["cancel_first"]
    assert jobs[cancel_ids[0]]["JobState"] == "CANCELLED"
    assert jobs[cancel_ids[1]]["JobState"] == "COMPLETED"

    (segment,) = jobs_of_rule(slurm_cluster, "segment", workdir)
    assert (segment["Partition"], segment.get("TresPerJob")) == ("gpu", "gres:gpu:1"), segment
    (hello,) = jobs_of_rule(slurm_cluster, "hello", workdir)
    assert hello["Partition"] == "cpu" and "gpu" not in hello.get("TresPerJob", ""), hello
    text = (workdir / "segment" / "a.txt").read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("liverburden "), text
    assert text[1:] == ["a", "partition=gpu", "gpus=1"]


# ---------------------------------------------------------------- the real workflow
#: The demo cohort of these runs: one subject, two time points, tiny phantoms.
DEMO_PHANTOM = ("--subjects", "1", "--timepoints", "2", "--seed", "7", "--size", "tiny")


def demo_config(folder: Path) -> dict[str, object]:
    """Workflow settings of both demo runs: a tiny phantom cohort written into ``folder``
    (read by both runs), the tiny test model on the CPU, fast segmentation."""
    subprocess.run(
        [sys.executable, "-m", "pipeline", "phantom", str(folder), *DEMO_PHANTOM, "-q"],
        check=True,
        timeout=120,
    )
    return {
        "samples": str(folder / "samples.tsv"),
        "segment": {"model": str(TEST_MODEL), "device": "cpu", "fast": True},
    }


def cancel_first_segment_job(cluster, workdir: Path) -> dict[str, str]:
    """scancel the first segmentation job once it runs (as a scheduler ends a job)."""

    def running() -> dict[str, str] | None:
        jobs = jobs_of_rule(cluster, "segment", workdir)
        return next((job for job in jobs if job.get("JobState") == "RUNNING"), None)

    job = wait_for(running, "a running segment job", timeout_s=180)
    cluster.cancel(job["JobId"])
    return job


@pytest.fixture(scope="module")
def demo_runs(
    slurm_cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run] | None]:
    """The demo workflow on SLURM (one segmentation job cancelled while it runs) and,
    at the same time, locally; both in their own folder with the same settings.
    None when the test model is missing (the demo tests then skip, the toy runs)."""
    if not (TEST_MODEL / "configs").is_dir():
        yield None
        return
    settings = demo_config(tmp_path_factory.mktemp("demo-cohort"))
    runs: dict[str, Run] = {}
    for name in ("slurm", "local"):
        workdir = tmp_path_factory.mktemp(f"demo-{name}").resolve()
        config = write_config(workdir, **settings)
        if name == "slurm":
            process = snakemake_on_slurm(
                slurm_cluster, SNAKEFILE, workdir, "--configfile", str(config)
            )
            killer = Choreography(lambda w=workdir: cancel_first_segment_job(slurm_cluster, w))
            runs[name] = Run(process, workdir, killer)
        else:
            process = snakemake_locally(
                slurm_cluster, SNAKEFILE, workdir, "--configfile", str(config)
            )
            runs[name] = Run(process, workdir)
    yield runs
    for run in runs.values():
        stop(run.process)


def assert_numbers_equal(local: object, slurm: object, where: str = "") -> None:
    """Same structure, same strings, numbers equal to 1e-9 (relative)."""
    if isinstance(local, dict):
        assert isinstance(slurm, dict) and local.keys() == slurm.keys(), where
        for key in local:
            assert_numbers_equal(local[key], slurm[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert isinstance(slurm, list) and len(local) == len(slurm), where
        for index, (a, b) in enumerate(zip(local, slurm, strict=True)):
            assert_numbers_equal(a, b, f"{where}[{index}]")
    elif isinstance(local, float) and not isinstance(local, bool):
        assert isinstance(slurm, int | float), where
        assert math.isclose(local, slurm, rel_tol=1e-9, abs_tol=1e-12), (where, local, slurm)
    else:
        assert local == slurm, (where, local, slurm)


def needs_demo(demo_runs: dict[str, Run] | None) -> dict[str, Run]:
    if demo_runs is None:
        pytest.skip(f"test segmentation model not found: {TEST_MODEL}")
    return demo_runs


def test_demo_workflow_on_slurm_equals_local_run(demo_runs: dict[str, Run] | None) -> None:
    """Segmentations, measurements, lesion tables, responses and cohort.csv of the SLURM
    run (with a killed and resubmitted segmentation job) equal those of the local run."""
    demo_runs = needs_demo(demo_runs)
    local, slurm = demo_runs["local"], demo_runs["slurm"]
    finish(local.process, local.workdir)
    assert slurm.choreography is not None
    slurm.choreography.result()
    finish(slurm.process, slurm.workdir)

    results = {name: run.workdir / "results" for name, run in demo_runs.items()}
    segmentations = sorted(
        p.relative_to(results["local"]) for p in results["local"].rglob("segmentation.nii.gz")
    )
    measurements = sorted(
        p.relative_to(results["local"]) for p in results["local"].rglob("measurements.json")
    )
    assert len(segmentations) == len(measurements) == 2
    for relative in segmentations:
        images = [sitk.ReadImage(str(results[name] / relative)) for name in ("local", "slurm")]
        assert np.array_equal(*(sitk.GetArrayViewFromImage(image) for image in images)), relative
        assert images[0].GetSpacing() == images[1].GetSpacing(), relative
        assert images[0].GetOrigin() == images[1].GetOrigin(), relative
    for relative in [
        *measurements,
        *sorted(p.relative_to(results["local"]) for p in results["local"].glob("*/response.json")),
    ]:
        documents = [
            json.loads((results[name] / relative).read_text(encoding="utf-8"))
            for name in ("local", "slurm")
        ]
        assert_numbers_equal(*documents, where=str(relative))
    assert list(results["local"].glob("*/response.json")), "no response assessed"
    tables = [
        *sorted(p.relative_to(results["local"]) for p in results["local"].rglob("lesions.csv")),
        Path("cohort.csv"),
    ]
    for relative in tables:
        frames = [pd.read_csv(results[name] / relative) for name in ("local", "slurm")]
        pd.testing.assert_frame_equal(*frames, check_exact=False, rtol=1e-9)
    for name in ("local", "slurm"):
        assert list(results[name].glob("*/report.html")), name


def test_demo_workflow_jobs_on_slurm(slurm_cluster, demo_runs: dict[str, Run] | None) -> None:
    """segment jobs ran on the GPU partition with one GPU, the cancelled one was submitted
    again; every other rule ran on the CPU partition; settings stayed on the login node."""
    slurm = needs_demo(demo_runs)["slurm"]
    assert slurm.choreography is not None
    cancelled = slurm.choreography.result()
    finish(slurm.process, slurm.workdir)
    workdir = slurm.workdir

    segment = jobs_of_rule(slurm_cluster, "segment", workdir)
    assert len(segment) == 3, segment  # two scans, one of them twice
    for job in segment:
        assert (job["Partition"], job.get("TresPerJob")) == ("gpu", "gres:gpu:1"), job
    states = {job["JobId"]: job["JobState"] for job in segment}
    assert states.pop(cancelled["JobId"]) == "CANCELLED"
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED"]
    resubmitted = [job for job in segment if job["JobId"] != cancelled["JobId"]]
    assert cancelled["Comment"] in {job["Comment"] for job in resubmitted}

    counts = {"measure": 2, "respond": 1, "report": 1, "cohort": 1}
    for rule, count in counts.items():
        jobs = jobs_of_rule(slurm_cluster, rule, workdir)
        assert len(jobs) == count, (rule, jobs)
        for job in jobs:
            assert (job["Partition"], job["JobState"]) == ("cpu", "COMPLETED"), job
            assert "gpu" not in job.get("TresPerJob", ""), job
    assert not jobs_of_rule(slurm_cluster, "settings", workdir)
