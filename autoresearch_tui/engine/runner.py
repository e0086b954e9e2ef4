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
import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..secrets import is_secret_name

RUN_MARKER = "AUTORESEARCH_RUN_ID"
def scrub_env(env: dict[str, str]) -> dict[str, str]:
    """The environment without provider keys and other secrets (names with KEY/TOKEN/SECRET…)."""
    return {k: v for k, v in env.items() if not is_secret_name(k)}


def become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


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


def start(
    command: str,
    cwd: Path,
    log_path: Path,
    exit_path: Path,
    budget_s: float,
    extra_env: dict[str, str] | None = None,
) -> RunHandle:
    run_id = uuid.uuid4().hex
    env = scrub_env(dict(os.environ))
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
    script = "trap 'echo $? > \"$AUTORESEARCH_EXIT_FILE\"' EXIT\n" + command + "\n"
    with open(log_path, "wb") as log:
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


def _proc(handle: RunHandle) -> psutil.Process | None:
    try:
        p = psutil.Process(handle.pid)
        if handle.create_time and abs(p.create_time() - handle.create_time) > 1.0:
            return None  # pid reused by something else
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


def is_alive(handle: RunHandle) -> bool:
    if handle.popen is not None:
        return handle.popen.poll() is None
    return _proc(handle) is not None


def marked_processes(run_id: str) -> list[psutil.Process]:
    """Processes whose environment carries this run's marker (works across sessions/reparenting)."""
    me = os.getpid()
    uid = os.getuid()
    found = []
    needle = f"{RUN_MARKER}={run_id}".encode()
    for p in psutil.process_iter(["uids"]):
        try:
            if p.pid == me or (p.info["uids"] and p.info["uids"].real != uid and uid != 0):
                continue
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if needle in f.read():
                    found.append(p)
        except (OSError, psutil.Error):
            continue
    return found


def snapshot(handle: RunHandle, scan_marker: bool = True) -> dict[int, psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    root = _proc(handle)
    if root is not None:
        procs[root.pid] = root
        try:
            for c in root.children(recursive=True):
                procs[c.pid] = c
        except psutil.Error:
            pass
    if scan_marker:
        for p in marked_processes(handle.run_id):
            procs.setdefault(p.pid, p)
            try:
                for c in p.children(recursive=True):
                    procs.setdefault(c.pid, c)
            except psutil.Error:
                pass
    procs.pop(os.getpid(), None)
    handle.seen.update(procs)
    return procs


def _alive(procs: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
    out = {}
    for pid, p in procs.items():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out[pid] = p
        except psutil.Error:
            continue
    return out


def _signal_all(procs: dict[int, psutil.Process], sig: int) -> None:
    own_pgrp = os.getpgrp()
    groups = set()
    for pid in procs:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    for g in groups:
        if g == own_pgrp or g <= 1:
            continue
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    for pid in procs:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def reap(handle: RunHandle) -> None:
    """Collect zombies of this run that were re-parented to us (we are a subreaper)."""
    if handle.popen is not None:
        try:
            handle.popen.poll()
        except Exception:
            pass
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    for c in children:
        if c.pid in handle.seen and (handle.popen is None or c.pid != handle.popen.pid):
            try:
                if c.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(c.pid, os.WNOHANG)
            except (psutil.Error, ChildProcessError, OSError):
                pass


def kill_tree(handle: RunHandle, grace_s: float) -> int:
    """SIGTERM every process group of the run, wait `grace_s`, SIGKILL survivors. Returns the
    number of processes still alive afterwards (0 unless the kernel refuses)."""
    procs = snapshot(handle)
    if procs:
        _signal_all(procs, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            reap(handle)
            # pick up processes forked during the grace period too
            procs.update(snapshot(handle, scan_marker=False))
            if not _alive(procs):
                break
            time.sleep(0.05)
        procs.update(snapshot(handle))
        left = _alive(procs)
        if left:
            _signal_all(left, signal.SIGKILL)
            end = time.monotonic() + 5
            while time.monotonic() < end:
                reap(handle)
                left = _alive(left)
                if not left:
                    break
                time.sleep(0.02)
    reap(handle)
    if handle.popen is not None:
        try:
            handle.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return len(_alive(snapshot(handle)))


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
    if not killed:
        # the root ended: nothing of the run may outlive it (daemons, stray workers)
        survivors = await asyncio.to_thread(cleanup_leftovers, handle, grace_s)
    exit_code = read_exit_code(handle)
    return RunOutcome(exit_code, timed_out, killed, ended - handle.started_at, handle.peak_rss / 1024**3, survivors)


def cleanup_leftovers(handle: RunHandle, grace_s: float) -> int:
    reap(handle)
    left = _alive(snapshot(handle))
    if not left:
        return 0
    return kill_tree(handle, grace_s)
