"""The ``slurm:FILE.yaml`` path against a real SLURM started here (Debian's slurm-wlm and munge): munged, slurmctld and
slurmd on loopback ports with a one-node config in a temporary directory, stopped at the end. Skips with the reason
when SLURM cannot start (not installed, not root, a daemon that does not come up)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symprobe import cli

pytest.importorskip("dask_jobqueue")

SRC = Path(__file__).resolve().parents[1] / "src"
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch")
FAST = ("--grid", "T+i", "--lmax", "1", "--convergence", "paper-0")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SLURM_CONF = """ClusterName=symprobetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _tail(path: Path) -> str:
    return " | ".join(path.read_text().splitlines()[-3:]) if path.exists() else f"{path.name} missing"


@pytest.fixture
def slurm(tmp_path_factory, monkeypatch):
    """The path of a running one-node SLURM's config (``SLURM_CONF`` set); every daemon stopped afterwards."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"SLURM cannot start here: {', '.join(missing)} not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("SLURM cannot start here: slurmd must run as root")
    d = Path(tmp_path_factory.mktemp("slurm"))
    (d / "state").mkdir()
    (d / "spool").mkdir()
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], ctld_port=_free_port(),
                                      slurmd_port=_free_port(), d=d, cpus=os.cpu_count()))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    started: list[Path] = []
    try:
        subprocess.run(["mungekey", "-c", "-f", "-k", str(d / "munge.key")], check=True, capture_output=True, timeout=30)
        (d / "munge.key").chmod(0o600)
        for command, pid_file in (
                (["munged", f"--key-file={d}/munge.key", f"--socket={d}/munge.socket", f"--pid-file={d}/munged.pid",
                  f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed", "-f"], d / "munged.pid"),
                (["slurmctld", "-f", str(conf)], d / "slurmctld.pid"),
                (["slurmd", "-f", str(conf)], d / "slurmd.pid")):
            subprocess.run(command, check=True, capture_output=True, timeout=30)
            started.append(pid_file)
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.skip(f"SLURM cannot start here: the node is {state or 'absent'} ({_tail(d / 'slurmd.log')})")
        yield conf
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        pytest.skip(f"SLURM cannot start here: {' '.join(str(error).split())} ({_tail(d / 'slurmctld.log')})")
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)


def _stop(pid_file: Path) -> None:
    """Stop the daemon whose pid ``pid_file`` holds (it may take a moment to write it)."""
    for _ in range(50):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.1)
    else:
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_an_audit_through_slurm_equals_the_serial_run(slurm, tmp_path):
    yaml = tmp_path / "slurm.yaml"
    yaml.write_text(json.dumps({  # JSON is YAML
        "cores": 1, "memory": "3GB", "walltime": "00:10:00", "jobs": 1, "python": sys.executable,
        "log_directory": str(tmp_path / "logs"), "local_directory": str(tmp_path / "dask"),
        "job_script_prologue": [f"export PYTHONPATH={SRC}:${{PYTHONPATH:-}}", "export OMP_NUM_THREADS=1"]}))
    assert cli.main(["audit", "builtin:qtip4pf", *FAST, "--out", str(tmp_path / "serial")]) == 0
    assert cli.main(["audit", "builtin:qtip4pf", *FAST, "--out", str(tmp_path / "slurm"), "--cluster", f"slurm:{yaml}"]) == 0
    serial, farmed = (json.loads((tmp_path / name / "audit.json").read_text()) for name in ("serial", "slurm"))
    assert serial == farmed
    log = [json.loads(line) for line in (tmp_path / "slurm" / "tasks" / "log.jsonl").read_text().splitlines()]
    assert {r["outcome"] for r in log} == {"done"} and len(log) == 2
    jobs = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    assert jobs == ""  # the worker jobs were cancelled with the cluster
