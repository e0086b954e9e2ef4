"""Running one experiment: its own session, output to a file, a deadline, and a kill that
leaves nothing behind.

* The command runs under ``/bin/sh`` in a new session (``start_new_session``; no
  ``preexec_fn``, which is unsafe in a threaded app), stdout+stderr to the per-run log file,
  ``PYTHONUNBUFFERED=1``, the budget in ``AUTORESEARCH_TIME_BUDGET``, provider keys removed.
  The shell writes the exit status to a file so that a restarted app can still score a run
  that finished while it was away.
* Every run carries ``AUTORESEARCH_RUN_ID`` in its environment. Processes that escaped the
  tree (double-forked daemons, ``torchrun`` workers in their own sessions whose parent died)
  are still found by that marker.
* The app is a child subreaper (``PR_SET_CHILD_SUBREAPER``) so orphans of a run are
  re-parented to it and stay findable as its descendants.
* Kill: snapshot the tree + marked processes, SIGTERM every process group among them, wait
  the grace period, snapshot again, SIGKILL what is left, reap.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .. import secrets
from .proctree import RUN_MARKER, become_subreaper, hide_from_runs, kill_tree, marked_processes, proc_of, reap, snapshot, still_alive

__all__ = ["RUN_MARKER", "RunHandle", "RunOutcome", "become_subreaper", "cleanup_leftovers", "hide_from_runs", "is_alive", "kill_tree",
           "marked_processes", "read_exit_code", "scrub_env", "start", "wait"]


#: a run's log is capped: past LOG_CAP bytes its middle is cut, the first and last halves stay
LOG_CAP = 64 * 1024 * 1024
CUT_MARK = b"\n[autoresearch-tui: %d bytes of output cut here: the log is capped at %d bytes]\n"


def scrub_env(env: dict[str, str], keep: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The environment without provider keys and other secrets (the rule is in `secrets`)."""
    return secrets.scrub(env, keep)


def cap_log(path: Path, cap: int) -> int:
    """If the log passed `cap` bytes, keep its first and last `cap/2` bytes (the run appends, so
    it goes on writing at the new end). Returns the bytes cut (0: none)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return 0
    if size <= cap:
        return 0
    half = cap // 2
    with open(path, "rb+") as f:
        f.seek(-half // 2, os.SEEK_END)
        tail = f.read()
        cut = f.tell() - len(tail) - half
        f.seek(half)
        mark = CUT_MARK % (cut, cap)
        f.truncate(half)
        f.write(mark + tail)
    return max(cut, 0)


@dataclass
class RunHandle:
    run_id: str
    pid: int
    create_time: float
    log_path: Path
    exit_path: Path
    started_at: float
    popen: subprocess.Popen | None = None
    seen: set[int] = field(default_factory=set)
    peak_rss: int = 0

    def to_state(self) -> dict:
        return {
            "run_id": self.run_id,
            "pid": self.pid,
            "pgid": self.pid,
            "create_time": self.create_time,
            "log_path": str(self.log_path),
            "exit_path": str(self.exit_path),
            "started_at": self.started_at,
        }

    @classmethod
    def from_state(cls, d: dict) -> "RunHandle":
        return cls(
            run_id=d["run_id"],
            pid=int(d["pid"]),
            create_time=float(d.get("create_time") or 0),
            log_path=Path(d["log_path"]),
            exit_path=Path(d["exit_path"]),
            started_at=float(d["started_at"]),
        )


@dataclass
class RunOutcome:
    exit_code: int | None
    timed_out: bool
    killed: bool
    duration_s: float
    peak_rss_gb: float
    survivors: int = 0
    reason: str = ""  # why it ended, when the executor knows better than an exit code (a Slurm job's state)


def start(
    command: str,
    cwd: Path,
    log_path: Path,
    exit_path: Path,
    budget_s: float,
    extra_env: dict[str, str] | None = None,
    keep_env: list[str] | tuple[str, ...] = (),
    sandbox: list[str] | tuple[str, ...] = (),
) -> RunHandle:
    """Start `command` (a shell command line) in `cwd`; `sandbox`: the bwrap argv it runs under."""
    run_id = uuid.uuid4().hex
    env = scrub_env(dict(os.environ), keep_env)
    env.update(extra_env or {})
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AUTORESEARCH_TIME_BUDGET": f"{budget_s:g}",
            RUN_MARKER: run_id,
            "AUTORESEARCH_EXIT_FILE": str(exit_path),
        }
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        exit_path.unlink()
    except FileNotFoundError:
        pass
    # the exit status goes to a file (also after `exit N` inside the command) so that a
    # restarted app can score a run that ended while it was away
    # (a sandboxed command runs in an inner shell: the outer one, outside, writes the exit file)
    inner = shlex.join([*sandbox, "/bin/sh", "-c", command]) if sandbox else command
    script = "trap 'echo $? > \"$AUTORESEARCH_EXIT_FILE\"' EXIT\n" + inner + "\n"
    # append mode: when the log is capped (truncated) the run goes on writing at its new end
    with open(log_path, "ab") as log:
        log.truncate(0)
        popen = subprocess.Popen(
            ["/bin/sh", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    try:
        ct = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        ct = 0.0
    return RunHandle(run_id, popen.pid, ct, log_path, exit_path, time.time(), popen, {popen.pid})


def is_alive(handle: RunHandle) -> bool:
    if handle.popen is not None:
        return handle.popen.poll() is None
    return proc_of(handle) is not None


def read_exit_code(handle: RunHandle) -> int | None:
    if handle.popen is not None and handle.popen.returncode is not None:
        rc = handle.popen.returncode
        return rc if rc >= 0 else 128 - rc
    try:
        return int(handle.exit_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _rss_of_tree(handle: RunHandle) -> int:
    total = 0
    for p in snapshot(handle, scan_marker=False).values():
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


async def wait(
    handle: RunHandle,
    timeout_s: float,
    grace_s: float,
    kill_requested: asyncio.Event,
    poll_s: float = 0.05,
    sample_s: float = 1.0,
    log_cap: int = LOG_CAP,
) -> RunOutcome:
    """Wait for the run to end, killing it at the deadline or on request."""
    deadline = handle.started_at + timeout_s
    next_sample = 0.0
    timed_out = killed = False
    survivors = 0
    while True:
        if not is_alive(handle):
            break
        now = time.time()
        if log_cap:
            cap_log(handle.log_path, log_cap)
        if now >= next_sample:
            rss = await asyncio.to_thread(_rss_of_tree, handle)
            handle.peak_rss = max(handle.peak_rss, rss)
            next_sample = now + sample_s
        if now >= deadline or kill_requested.is_set():
            timed_out = now >= deadline and not kill_requested.is_set()
            killed = True
            survivors = await asyncio.to_thread(kill_tree, handle, grace_s)
            break
        # short sleeps early (fast runs finish fast), longer later
        elapsed = now - handle.started_at
        await asyncio.sleep(poll_s if elapsed < 2 else min(0.25, poll_s * 4))
    ended = time.time()
    if log_cap:
        cap_log(handle.log_path, log_cap)
    if not killed:
        # the root ended: nothing of the run may outlive it (daemons, stray workers)
        survivors = await asyncio.to_thread(cleanup_leftovers, handle, grace_s)
    exit_code = read_exit_code(handle)
    return RunOutcome(exit_code, timed_out, killed, ended - handle.started_at, handle.peak_rss / 1024**3, survivors)


def cleanup_leftovers(handle: RunHandle, grace_s: float) -> int:
    reap(handle)
    left = still_alive(snapshot(handle))
    if not left:
        return 0
    return kill_tree(handle, grace_s)
