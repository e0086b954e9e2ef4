"""A real single-node Slurm on loopback for the tests (and the benchmark): munged, slurmctld and
slurmd with 4 fake GPUs (char devices) and 8 claimed CPUs, its own state folders and ports.

`LoopbackSlurm.start()` returns None when it runs, else the reason it cannot here (no Slurm
packages, not root): the tests then skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = """\
ClusterName=loopback
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
SlurmctldPort={cport}
SlurmdPort={dport}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackSlurm:
    def __init__(self, d: Path):
        self.dir = Path(d)
        self.conf = self.dir / "slurm.conf"
        self.procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> str | None:
        missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch", "squeue") if not shutil.which(c)]
        if missing:
            return f"Slurm is not installed here ({', '.join(missing)} missing; apt-get install slurmctld slurmd slurm-client munge)"
        if os.geteuid() != 0:
            return "a loopback Slurm needs root (slurmd)"
        host = socket.gethostname().split(".")[0]
        d = self.dir
        for sub in ("state", "spool", "gpu"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        files = []
        for i in range(4):
            dev = d / "gpu" / f"fakegpu{i}"
            if not dev.exists():
                subprocess.run(["mknod", str(dev), "c", "1", "3"], check=True)
            files.append(str(dev))
        self.conf.write_text(CONF.format(host=host, cport=_free_port(), dport=_free_port(), d=d))
        (d / "gres.conf").write_text(f"Name=gpu File={d}/gpu/fakegpu[0-3]\n")
        why = self._munge()
        if why:
            return why
        env = {**os.environ, **self.env}
        self.procs.append(subprocess.Popen(["slurmctld", "-D", "-i"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        self.procs.append(subprocess.Popen(["slurmd", "-D"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.time() + timeout
        while time.time() < end:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
            if out in ("idle", "mix", "alloc"):
                return None
            time.sleep(0.5)
        self.stop()
        return f"the loopback Slurm did not come up within {timeout:g} s (see {d}/slurmctld.log)"

    @staticmethod
    def _munge() -> str | None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return None
        for p in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            os.makedirs(p, exist_ok=True)
            shutil.chown(p, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], capture_output=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        p = subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "munged"], capture_output=True, text=True)
        if p.returncode != 0:
            return f"munged did not start: {p.stderr.strip()[-200:]}"
        return None

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()
