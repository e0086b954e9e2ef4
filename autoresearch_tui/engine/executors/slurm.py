"""The Slurm executor: each experiment is a batch job (`sbatch`), watched with `squeue`,
cancelled with `scancel`, looked up with `scontrol` — Slurm's own command line, nothing
home-made in between.

* The job runs in the experiment's worktree (on a filesystem the nodes share) under the
  package's supervisor (`engine/supervise.py`), which enforces the budget and the timeout with
  the same whole-tree kill as local runs and writes the outcome next to the log.
* `--time` is the run's timeout plus a margin, in whole minutes (Slurm's granularity), so that
  Slurm never cancels before the supervisor has killed and written the outcome.
* The job's environment is the app's without secrets (but `keep_env`), plus the run's variables
  (`--export=ALL` of a scrubbed environment); Slurm sets `CUDA_VISIBLE_DEVICES` for the GPUs it
  grants. The app's bubblewrap sandbox is not applied on the nodes: the cluster isolates jobs.
* PENDING is "queued": the budget counts from the start. One `squeue` call serves every job,
  about every 2 s, less often while nothing changes.
* A job that ends without an outcome file (node failure, preemption, a cancel the supervisor did
  not see) is a crash with the state Slurm reports. Preempted jobs are not requeued
  (`--no-requeue`): a requeued experiment would run twice under one row.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...config import Config
from ..runner import RunOutcome, scrub_env
from .base import RunSpec

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol")
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"}


class SlurmError(Exception):
    pass


@dataclass
class SlurmHandle:
    job_id: str
    log_path: Path
    exit_path: Path
    started_at: float  # submitted; the start once the job runs
    submitted_at: float = 0.0
    running: bool = False
    state: str = "PENDING"
    pid: int = 0
    node: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {"executor": "slurm", "job_id": self.job_id, "log_path": str(self.log_path), "exit_path": str(self.exit_path),
                "started_at": self.started_at, "submitted_at": self.submitted_at, "running": self.running, "pid": 0, "run_id": self.job_id}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "SlurmHandle":
        return cls(str(d["job_id"]), Path(d["log_path"]), Path(d["exit_path"]), float(d.get("started_at") or 0),
                   float(d.get("submitted_at") or 0), bool(d.get("running")))


def time_limit(timeout_s: float, margin_s: float = 120) -> str:
    """sbatch --time for a run: its timeout plus a margin, rounded up to whole minutes."""
    minutes = max(1, math.ceil((timeout_s + margin_s) / 60))
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None]


class SlurmExecutor:
    name = "slurm"

    def __init__(self, cfg: Config, python: str = sys.executable):
        self.cfg = cfg
        self.python = python
        self.observer: Callable[[Any, str], None] | None = None  # (handle, "queued" | "running")
        self._states: dict[str, tuple[str, str]] = {}  # job id -> (state, reason)
        self._polled_at = 0.0
        self._interval = 1.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ commands
    def _run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        p = subprocess.run(list(args), capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
        if check and p.returncode != 0:
            msg = (p.stderr or p.stdout).strip().splitlines()
            raise SlurmError(f"{args[0]} failed: {msg[-1] if msg else 'exit ' + str(p.returncode)}")
        return p.stdout

    def script(self, spec: RunSpec) -> str:
        c, tag = self.cfg.compute, self.cfg.tag
        lines = ["#!/bin/sh", f"#SBATCH --job-name=autoresearch-{tag}-{spec.iteration}" + (f"-{spec.kind}" if spec.kind != "run" else ""),
                 f"#SBATCH --output={spec.log_path}.slurm", f"#SBATCH --chdir={spec.cwd}",
                 f"#SBATCH --time={c.time_limit or time_limit(spec.timeout_s)}", "#SBATCH --no-requeue", "#SBATCH --export=ALL"]
        if c.partition:
            lines.append(f"#SBATCH --partition={c.partition}")
        if c.account:
            lines.append(f"#SBATCH --account={c.account}")
        if c.gpu_flag == "gres":
            lines.append(f"#SBATCH --gres=gpu:{c.gpus_per_run}")
        elif c.gpu_flag == "gpus":
            lines.append(f"#SBATCH --gpus={c.gpus_per_run}")
        sup = [self.python, "-m", "autoresearch_tui.engine.supervise", "--log", str(spec.log_path), "--exit", str(spec.exit_path),
               "--budget", f"{spec.budget_s:g}", "--timeout", f"{spec.timeout_s:g}", "--grace", f"{spec.grace_s:g}", spec.command]
        lines.append("exec " + " ".join(shlex.quote(w) for w in sup))
        return "\n".join(lines) + "\n"

    def start(self, spec: RunSpec) -> SlurmHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        for p in (spec.exit_path, spec.log_path):
            p.unlink(missing_ok=True)
        spec.log_path.touch()  # the UI tails it from the start (the job writes it once it runs)
        path = spec.log_path.with_suffix(".sbatch")
        path.write_text(self.script(spec))
        env = scrub_env(dict(os.environ), spec.keep_env)  # (no bwrap here: the cluster isolates its jobs)
        env.update(spec.env)
        env["PYTHONUNBUFFERED"] = "1"
        out = self._run("sbatch", "--parsable", *self.cfg.compute.extra_args, str(path), env=env)
        job = out.strip().split(";", 1)[0]
        if not job.isdigit():
            raise SlurmError(f"sbatch answered {out.strip()!r}, not a job id")
        now = time.time()
        with self._lock:
            self._states[job] = ("PENDING", "")
        return SlurmHandle(job, spec.log_path, spec.exit_path, now, now)

    # -------------------------------------------------------------- polling
    def poll(self, force: bool = False) -> dict[str, tuple[str, str]]:
        """Every job of ours in the queue: id -> (state, reason). One `squeue` call at most every
        `_interval` s (1 s, up to 5 s while nothing changes). When squeue fails (a busy
        controller), the last answer stands: a job is never taken for ended on a failed call."""
        with self._lock:
            if not force and time.time() - self._polled_at < self._interval:
                return dict(self._states)
            p = subprocess.run(["squeue", "-h", "--me", "-o", "%i|%T|%r"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            if p.returncode != 0:
                self._polled_at = time.time()
                return dict(self._states)
            states = {}
            for line in p.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3:
                    states[parts[0]] = (parts[1], parts[2])
            changed = states != self._states
            self._interval = 1.0 if changed else min(5.0, self._interval * 1.5)
            self._states, self._polled_at = states, time.time()
            return dict(states)

    def _state(self, job: str, force: bool = False) -> tuple[str, str]:
        """(state, reason) of one job; a job missing from the queue is asked about by id, so that
        only Slurm's own word ends a run."""
        got = self.poll(force).get(job)
        if got is not None:
            return got
        return self.job_state(job), ""

    def job_state(self, job: str, tries: int = 10) -> str:
        """The state Slurm has for a job ('' = it does not know the job any more). Retries while
        the controller does not answer; a job that cannot be asked about for ~10 s is an error."""
        for _ in range(tries):
            p = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            if p.returncode == 0:
                for word in p.stdout.split():
                    if word.startswith("JobState="):
                        return word.split("=", 1)[1]
                return ""
            if "Invalid job id" in p.stderr:
                return ""
            time.sleep(1.0)
        raise SlurmError(f"scontrol cannot say what became of job {job}: {p.stderr.strip()[-200:]}")

    # ----------------------------------------------------------------- wait
    async def wait(self, handle: SlurmHandle, spec: RunSpec, kill: asyncio.Event, poll_s: float) -> RunOutcome:
        backstop = spec.timeout_s + spec.grace_s + 60  # the supervisor kills at the timeout; this is if it could not
        while True:
            state, reason = await asyncio.to_thread(self._state, handle.job_id)
            if state in ("RUNNING", "COMPLETING") and not handle.running:
                handle.running, handle.started_at = True, time.time()
                self._observe(handle, "running")
            elif state == "PENDING" and not handle.running:
                handle.extra["pending_reason"] = reason
                self._observe(handle, "queued")
            handle.state = state or handle.state
            if not state or state not in ACTIVE or handle.exit_path.exists():
                break  # (the supervisor's outcome file: the run is over, whatever the queue says yet)
            if kill.is_set() or (handle.running and time.time() - handle.started_at > backstop):
                await asyncio.to_thread(self.kill, handle, spec.grace_s)
                break
            try:
                await asyncio.wait_for(kill.wait(), max(poll_s, 0.5))
            except asyncio.TimeoutError:
                pass
        return await asyncio.to_thread(self.outcome, handle, kill.is_set())

    def _observe(self, handle: SlurmHandle, what: str) -> None:
        if self.observer is not None:
            self.observer(handle, what)

    def outcome(self, handle: SlurmHandle, killed: bool = False) -> RunOutcome:
        """The run's outcome from the supervisor's file; without one, a crash with Slurm's state."""
        data = None
        for _ in range(30):  # the file may reach a shared filesystem a moment after the job left the queue
            try:
                data = json.loads(handle.exit_path.read_text())
                break
            except (OSError, ValueError):
                time.sleep(0.1)
        if data is not None:
            start = float(data.get("started_at") or handle.started_at)
            return RunOutcome(data.get("exit_code"), bool(data.get("timed_out")), bool(data.get("killed")) or killed,
                              float(data.get("duration_s") or time.time() - start), float(data.get("peak_rss_gb") or 0),
                              int(data.get("survivors") or 0), str(data.get("reason") or ""))
        state = self.job_state(handle.job_id) or handle.state or "unknown"
        dur = time.time() - handle.started_at if handle.running else 0.0
        why = f"the Slurm job {handle.job_id} ended as {state} without the supervisor's outcome"
        if state.startswith(("NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "OUT_OF_MEMORY")):
            why = f"the Slurm job {handle.job_id} ended as {state}"
        elif state.startswith("CANCELLED") and not killed:
            why = f"the Slurm job {handle.job_id} was cancelled by someone else (scancel)"
        return RunOutcome(None, False, killed, dur, 0.0, 0, why)

    # ------------------------------------------------------------ kill etc.
    def kill(self, handle: SlurmHandle, grace_s: float) -> int:
        """scancel (SIGTERM: the supervisor kills the whole tree and writes the outcome), then wait
        for the job to leave the queue; a job still there after the grace period gets SIGKILL."""
        self._run("scancel", handle.job_id, check=False)
        end = time.time() + grace_s + 15
        while time.time() < end:
            if self._state(handle.job_id, force=True)[0] not in ACTIVE:
                return 0
            time.sleep(0.5)
        self._run("scancel", "--signal=KILL", "--full", handle.job_id, check=False)
        return 1 if self._state(handle.job_id, force=True)[0] in ACTIVE else 0

    def reattach(self, saved: dict[str, Any]) -> SlurmHandle | None:
        if saved.get("executor") != "slurm":
            return None
        handle = SlurmHandle.from_state(saved)
        return handle if self._state(handle.job_id, force=True)[0] in ACTIVE else None

    def ended_while_away(self, saved: dict[str, Any], grace_s: float) -> tuple[SlurmHandle, RunOutcome]:
        handle = SlurmHandle.from_state(saved)
        return handle, self.outcome(handle)


def check(cfg: Config) -> str | None:
    """Why a session cannot use Slurm here (one line), or None."""
    missing = missing_commands()
    file = cfg.path.name
    if missing:
        return f"{file}: [compute] executor = \"slurm\" but {', '.join(missing)} not found on PATH; run on a login node or use executor = \"local\""
    if cfg.compute.partition:
        p = subprocess.run(["scontrol", "show", "partition", cfg.compute.partition], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            return f"{file}: [compute] partition '{cfg.compute.partition}' does not exist (scontrol show partition); check sinfo"
    return None
