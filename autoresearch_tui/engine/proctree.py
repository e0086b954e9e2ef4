"""Finding and killing every process of a run: its tree, processes that left the tree but carry
the run's marker in their environment (double-forked daemons, `torchrun` workers in their own
sessions), and the zombies re-parented to us (we are a child subreaper).

Kill: snapshot the tree + marked processes, SIGTERM every process group among them, wait the
grace period, snapshot again, SIGKILL what is left, reap.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from .runner import RunHandle

RUN_MARKER = "AUTORESEARCH_RUN_ID"


def become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def hide_from_runs() -> bool:
    """PR_SET_DUMPABLE 0: a run of the same (non-root) user can then neither read the app's
    `/proc/<pid>/environ` (the provider keys the runs do not get) nor attach a debugger to it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
    except Exception:
        return False


def proc_of(handle: RunHandle) -> psutil.Process | None:
    try:
        p = psutil.Process(handle.pid)
        if handle.create_time and abs(p.create_time() - handle.create_time) > 1.0:
            return None  # pid reused by something else
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


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
    root = proc_of(handle)
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


def still_alive(procs: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
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
            if not still_alive(procs):
                break
            time.sleep(0.05)
        procs.update(snapshot(handle))
        left = still_alive(procs)
        if left:
            _signal_all(left, signal.SIGKILL)
            end = time.monotonic() + 5
            while time.monotonic() < end:
                reap(handle)
                left = still_alive(left)
                if not left:
                    break
                time.sleep(0.02)
    reap(handle)
    if handle.popen is not None:
        try:
            handle.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return len(still_alive(snapshot(handle)))
