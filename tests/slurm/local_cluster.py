"""A throw-away one-node SLURM cluster on localhost, for tests and for trying the profile.

It runs ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as children of
this process (no systemd, no cgroups, no accounting database), with every file
(munge key and socket, ``slurm.conf``, ``gres.conf``, state, spool, logs) in one
directory, on free TCP ports, with its own munge socket and key. The one file
outside that directory is a link ``/etc/slurm/slurm.conf`` to its configuration,
made only where the host has no SLURM configuration of its own and removed on
stop: ``srun`` inside a job reads it (the executor's job step drops
``SLURM_CONF``). Other clients find the cluster through ``SLURM_CONF``
(:meth:`environment`).

The node offers two partitions, ``cpu`` (default) and ``gpu``, with the same names
as the placeholders in ``profiles/slurm/config.yaml``, and generic resources
``gpu`` (fake devices: ``/dev/null``, ...) so that ``--gpus=1`` requests are
scheduled and each job sees its own ``CUDA_VISIBLE_DEVICES`` like on a real GPU
node; no CUDA device exists behind them, so PyTorch still runs on the CPU.

Needs root (``slurmd`` starts job steps as the submitting user) and the Debian
packages ``slurmctld slurmd slurm-client munge`` (``.ci/slurm-setup.sh``).

Command line (for trying things by hand)::

    python tests/slurm/local_cluster.py start /tmp/lb-slurm   # prints `export SLURM_CONF=...`
    snakemake --workflow-profile profiles/slurm --slurm-status-command squeue
    python tests/slurm/local_cluster.py stop /tmp/lb-slurm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: Executables the cluster needs; all come from Debian's slurmctld, slurmd, slurm-client, munge.
REQUIRED_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
#: Partition names; identical to the placeholders in profiles/slurm/config.yaml.
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"

#: Where SLURM commands look for their configuration when ``SLURM_CONF`` is unset. Inside
#: a job the SLURM executor's job step drops ``SLURM_*`` variables (SLURM_CONF too) before
#: it calls ``srun``, so, as on every real node, the configuration must be found here.
DEFAULT_SLURM_CONF = Path("/etc/slurm/slurm.conf")
#: First line of every slurm.conf this module writes (to recognise a stale link of ours).
CONF_HEADER = "# One-node test cluster written by tests/slurm/local_cluster.py; not for production."


SLURM_CONF_TEMPLATE = (
    CONF_HEADER
    + """
ClusterName=liverburden-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# no cgroups: plain process tracking, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
# the node may claim more CPUs/memory than the host has (the profile's real requests fit)
SlurmdParameters=config_overrides
# finished jobs stay visible to squeue (the executor polls squeue: no accounting database)
MinJobAge=600
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{gpus} State=UNKNOWN
PartitionName={cpu_partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={gpu_partition} Nodes={node} MaxTime=INFINITE State=UP
"""
)

#: Character devices standing in for GPUs (one per fake GPU; nothing reads them).
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full")

GRES_CONF_TEMPLATE = """\
# Fake GPUs: SLURM schedules them and sets CUDA_VISIBLE_DEVICES; no device is behind them.
AutoDetect=off
NodeName={node} Name=gpu File={gpu_files}
"""


class ClusterError(RuntimeError):
    """The cluster could not be started (message names the daemon and its log)."""


class HostSlurmConfiguredError(ClusterError):
    """/etc/slurm/slurm.conf belongs to this host's own SLURM or to another running test
    cluster: a new test cluster must not replace it."""


def missing_requirements() -> str | None:
    """Why a local cluster cannot run here, or None when it can."""
    missing = [program for program in REQUIRED_PROGRAMS if shutil.which(program) is None]
    if missing:
        return (
            f"SLURM/munge programs not installed: {', '.join(missing)} "
            "(run .ci/slurm-setup.sh, or apt-get install slurmctld slurmd slurm-client munge)"
        )
    if os.geteuid() != 0:
        return "a local SLURM node needs root (slurmd starts job steps as the job's user)"
    return _default_conf_in_use()


def _default_conf_in_use() -> str | None:
    """Why /etc/slurm/slurm.conf cannot be linked to a new test cluster, or None.

    It can when absent, or when it is a link left by a test cluster that no longer
    runs (dangling, or its slurmctld is gone).
    """
    path = DEFAULT_SLURM_CONF
    if not path.is_symlink():
        if path.exists():
            return (
                f"{path} exists and is not a test cluster's: this host has its own SLURM "
                "set-up, which the test does not replace (srun inside jobs reads that file)"
            )
        return None
    if not path.exists():
        return None
    with path.open() as stream:
        if stream.readline().rstrip("\n") != CONF_HEADER:
            return f"{path} links to a SLURM configuration that is not a test cluster's"
    try:
        pids = json.loads((path.resolve().parent / "pids.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(_alive(int(pid)) for pid in pids.values()):
        return f"another test cluster is running ({path} -> {path.resolve()})"
    return None


def _alive(pid: int) -> bool:
    """True for a running process (a zombie left unreaped by its parent is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalSlurmCluster:
    """One controller and one compute node on 127.0.0.1, all files under ``root``.

    Parameters
    ----------
    root
        Directory for every file of the cluster (created; keep its path short: the
        munge socket path must stay under 108 characters).
    cpus
        CPUs the node advertises (may exceed the host's: ``config_overrides``).
    memory_mb
        Memory the node advertises, in MB.
    gpus
        Number of fake ``gpu`` generic resources (at most ``len(FAKE_GPU_DEVICES)``).
    """

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 16000, gpus: int = 1) -> None:
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.memory_mb = memory_mb
        if not 1 <= gpus <= len(FAKE_GPU_DEVICES):
            raise ValueError(f"gpus must be 1 to {len(FAKE_GPU_DEVICES)}, not {gpus}")
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.slurm_conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ set-up
    def environment(self) -> dict[str, str]:
        """``os.environ`` plus ``SLURM_CONF`` pointing at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.slurm_conf)}

    def _write_configuration(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged wants a private key and a socket directory that others may traverse
        os.chmod(self.root / "munge", 0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o600)
        if len(str(self.munge_socket)) >= 100:
            raise ClusterError(f"munge socket path too long for a unix socket: {self.munge_socket}")
        controller_port, node_port = _free_ports(2)
        values = {
            "node": self.node,
            "root": self.root,
            "munge_socket": self.munge_socket,
            "controller_port": controller_port,
            "node_port": node_port,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "gpus": self.gpus,
            "gpu_files": ",".join(FAKE_GPU_DEVICES[: self.gpus]),
            "cpu_partition": CPU_PARTITION,
            "gpu_partition": GPU_PARTITION,
        }
        self.slurm_conf.write_text(SLURM_CONF_TEMPLATE.format(**values))
        (self.root / "gres.conf").write_text(GRES_CONF_TEMPLATE.format(**values))
        reason = _default_conf_in_use()
        if reason:
            raise HostSlurmConfiguredError(reason)
        DEFAULT_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if DEFAULT_SLURM_CONF.is_symlink():
            DEFAULT_SLURM_CONF.unlink()
        DEFAULT_SLURM_CONF.symlink_to(self.slurm_conf)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (lives with the daemon)
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(),
            start_new_session=True,
        )
        log.close()
        self._processes[name] = process
        self._record_pids()

    def _record_pids(self) -> None:
        pids = {name: process.pid for name, process in self._processes.items()}
        (self.root / "pids.json").write_text(json.dumps(pids))

    def _daemon_log(self, name: str) -> str:
        text = ""
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text

    def _check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise ClusterError(
                    f"{name} exited with status {process.returncode}; its log:\n"
                    + self._daemon_log(name)
                )

    def _run(self, *command: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            env=self.environment(),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )

    def start(self, timeout_s: float = 60) -> None:
        """Write the configuration, start the three daemons, wait until the node is idle."""
        self._write_configuration()
        munge_dir = self.root / "munge"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={munge_dir / 'munge.key'}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
        )
        deadline = time.monotonic() + timeout_s
        while not self.munge_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ClusterError("munged did not create its socket in time")
            time.sleep(0.1)
        # -i: ignore (absent) saved state; -D: stay in the foreground
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.slurm_conf)])
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, deadline, "slurmctld")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.slurm_conf)])
        self._wait(self._node_ready, deadline, "slurmd")

    def _node_ready(self) -> bool:
        result = self._run("sinfo", "--noheader", "--node", self.node, "--format=%t")
        states = set(result.stdout.split())
        return result.returncode == 0 and bool(states) and states <= {"idle", "mix", "alloc"}

    def _wait(self, ready, deadline: float, name: str) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(subprocess.TimeoutExpired):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} not ready in time; its log:\n{self._daemon_log(name)}")
            time.sleep(0.3)

    # ------------------------------------------------------------------ jobs
    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows, finished ones too (``MinJobAge``), as the
        ``Key=Value`` fields of ``scontrol show job`` (``JobId``, ``JobState``,
        ``Partition``, ``TimeLimit``, ``Comment`` (the executor writes the rule
        there), ``TresPerJob``, ``Restarts`` ...)."""
        result = self._run("scontrol", "--oneliner", "show", "job")
        rows = []
        for line in result.stdout.splitlines():
            fields = dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", line))
            if "JobId" in fields:
                rows.append(fields)
        return rows

    def cancel(self, job_id: str) -> None:
        """``scancel`` a job, as an administrator or a lost node ends it (state CANCELLED)."""
        self._run("scancel", job_id).check_returncode()

    def requeue(self, job_id: str, timeout_s: float = 30) -> None:
        """Requeue a running job, as SLURM does on preemption or node failure, and let it
        start again at once (a requeued job otherwise waits about two minutes)."""
        self._run("scontrol", "requeue", job_id).check_returncode()
        deadline = time.monotonic() + timeout_s
        while self.job(job_id).get("JobState") != "PENDING":
            if time.monotonic() > deadline:
                raise ClusterError(f"requeued job {job_id} did not return to the queue")
            time.sleep(0.2)
        self._run("scontrol", "update", f"JobId={job_id}", "StartTime=now").check_returncode()

    def end_now(self, job_id: str) -> None:
        """Move a running job's end time to now: at its next time-limit check (every 30 s)
        slurmctld kills it with state TIMEOUT, as when a job outgrows its ``runtime``."""
        self._run("scontrol", "update", f"JobId={job_id}", "EndTime=now").check_returncode()

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` fields of one job ({} when unknown)."""
        return next((job for job in self.jobs() if job["JobId"] == job_id), {})

    # ------------------------------------------------------------------ tear-down
    def _job_processes(self) -> Iterator[int]:
        """Step daemons and job processes of this cluster (not the shell that submitted).

        A process belongs to this cluster when its environment names this
        ``slurm.conf`` and it is a ``slurmstepd`` or runs inside a job (``SLURM_JOB_ID``).
        """
        marker = f"SLURM_CONF={self.slurm_conf}".encode()
        own = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                variables = (entry / "environ").read_bytes().split(b"\0")
                command = (entry / "comm").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if marker not in variables:
                continue
            in_job = any(variable.startswith(b"SLURM_JOB_ID=") for variable in variables)
            if in_job or command.startswith("slurmstepd"):
                yield int(entry.name)

    def stop(self, timeout_s: float = 20) -> None:
        """Cancel every job, stop the daemons this object started, kill leftover job processes."""
        if self._processes.get("slurmctld") and self._processes["slurmctld"].poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run("scancel", "--full", "--user", "root", timeout=10)
                deadline = time.monotonic() + min(timeout_s, 10)
                while time.monotonic() < deadline and any(
                    job.get("JobState") in {"RUNNING", "COMPLETING", "PENDING", "CONFIGURING"}
                    for job in self.jobs()
                ):
                    time.sleep(0.3)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self._processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s / 2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # slurmstepd and job processes outlive slurmd: end the ones of this cluster only
        for pid in list(self._job_processes()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._processes.clear()
        self._record_pids()
        self._unlink_default_conf()

    def _unlink_default_conf(self) -> None:
        path = DEFAULT_SLURM_CONF
        with contextlib.suppress(OSError):
            if path.is_symlink() and Path(os.readlink(path)) == self.slurm_conf:
                path.unlink()

    def __enter__(self) -> LocalSlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _AdoptedCluster(LocalSlurmCluster):
    """A cluster started by another process (command line ``stop``)."""

    def adopt(self) -> None:
        pids = json.loads((self.root / "pids.json").read_text(encoding="utf-8"))
        for name, pid in pids.items():
            self._processes[name] = _Pid(pid)  # type: ignore[assignment]


class _Pid:
    """The bits of Popen that stop() uses, for a process that is not our child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        return None if _alive(self.pid) else 0

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.1)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("directory", type=Path, help="directory for all cluster files")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=16000)
    args = parser.parse_args(argv)
    if args.action == "start":
        reason = missing_requirements()
        if reason:
            print(f"local_cluster: {reason}", file=sys.stderr)
            return 2
        cluster = LocalSlurmCluster(args.directory, cpus=args.cpus, memory_mb=args.memory_mb)
        try:
            cluster.start()
        except ClusterError as error:
            cluster.stop()
            print(f"local_cluster: {error}", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={cluster.slurm_conf}")
        return 0
    cluster = _AdoptedCluster(args.directory)
    cluster.adopt()
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
