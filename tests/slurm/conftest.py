"""A one-node Slurm cluster on this machine for the Slurm executor's tests (Debian's slurm-wlm and munge).

The fixture writes its own slurm.conf (one node = this host, one partition ``debug``), its own munge key and munge
socket (``AuthInfo=socket=``), and its own state and spool folders, all under a temporary folder; it starts
munged, slurmctld and slurmd (each daemonizes and writes a pid file), waits until ``sinfo`` shows the node idle,
points ``SLURM_CONF`` at its config for the session, and at the end stops only the daemons it started (by their pid
files). No systemd, no cgroups (proctrack/linuxproc, task/none): it runs in a container. slurmd must run as root.

Skipped, with the reason, when Slurm is not installed or we are not root; with ``LORA_AUDIT_REQUIRE_SLURM=1`` (CI)
those are failures instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
TOOLS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def _unavailable(why: str):
    if os.environ.get("LORA_AUDIT_REQUIRE_SLURM") == "1":
        pytest.fail(f"LORA_AUDIT_REQUIRE_SLURM=1 but {why}")
    pytest.skip(f"Slurm tests need a local Slurm: {why} (apt-get install slurm-wlm munge; see .ci/run)")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
                                      None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(root: Path, host: str, sock: Path) -> str:
    cpus = max(os.cpu_count() or 1, 8)  # more slots than cores: stand-in runners barely use a CPU
    return f"""\
ClusterName=loraaudit
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=2
OverTimeLimit=0
MinJobAge=600
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = [t for t in (*TOOLS, *DAEMONS) if _which(t) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not found")
    if os.geteuid() != 0:
        _unavailable("slurmd must run as root")
    root = Path(tmp_path_factory.mktemp("slurm"))
    for d in ("state", "spool", "log"):
        (root / d).mkdir()
    host = socket.gethostname().split(".")[0]
    sock = root / "munge.sock"
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, host, sock))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    old = os.environ.get("SLURM_CONF")

    def start(args: list[str], pidfile: Path, log: Path) -> None:
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} did not start ({r.returncode}): {r.stderr}{tail}")
        started.append(pidfile)

    try:
        start([_which("munged"), "--force", f"--socket={sock}", f"--key-file={key}",
               f"--log-file={root}/log/munged.log", f"--pid-file={root}/munged.pid",
               f"--seed-file={root}/munged.seed"], root / "munged.pid", root / "log/munged.log")
        start([_which("slurmctld"), "-f", str(conf)], root / "slurmctld.pid", root / "log/slurmctld.log")
        start([_which("slurmd"), "-f", str(conf)], root / "slurmd.pid", root / "log/slurmd.log")
        os.environ["SLURM_CONF"] = str(conf)
        end = time.monotonic() + 60
        state = ""
        while time.monotonic() < end:
            r = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
            state = r.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "".join((root / "log" / f).read_text(errors="replace")[-1500:]
                           for f in ("slurmctld.log", "slurmd.log") if (root / "log" / f).exists())
            raise RuntimeError(f"the Slurm node did not become idle (sinfo: {state!r}):\n{logs}")
        yield {"conf": conf, "root": root, "host": host}
    finally:
        subprocess.run(["scancel", "--me"], env=env, capture_output=True)
        for pidfile in reversed(started):
            _stop(pidfile)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
