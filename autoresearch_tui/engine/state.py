"""`.autoresearch/`: the instance lock and the small state file used to resume."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text


class LockedError(Exception):
    pass


class SessionLock:
    """An exclusive `flock` on `.autoresearch/lock` — and on the repository's git folder, which a
    run cannot delete without destroying the repository: deleting the lock file does not let a
    second instance in. Both are released by the kernel if the app dies."""

    def __init__(self, state_dir: Path, anchor: Path | None = None):
        self.path = Path(state_dir) / "lock"
        self.anchor = Path(anchor) if anchor is not None else None
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._ino: int | None = None

    def _git_dir(self) -> Path | None:
        if self.anchor is None:
            return None
        p = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=self.anchor, capture_output=True, text=True)
        return (self.anchor / p.stdout.strip()).resolve() if p.returncode == 0 and p.stdout.strip() else None

    def _locked(self, other: str) -> LockedError:
        return LockedError(
            f"{self.path}: another autoresearch-tui (pid {other}) is running in this repository; "
            "attach to its tmux window, or stop it first"
        )

    def acquire(self) -> None:
        gd = self._git_dir()
        if gd is not None:
            dfd = os.open(gd, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(dfd)
                raise self._locked(self._pid_in_file()) from None
            self._dir_fd = dfd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            self._release_dir()
            raise self._locked(other) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd
        self._ino = os.fstat(fd).st_ino

    def _pid_in_file(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()[:64] or "?"
        except OSError:
            return "?"

    def verify(self) -> str:
        """'' while the lock file is the one held; else what happened to it — and it is made
        again (the git folder's lock still keeps a second instance out)."""
        if self._fd is None:
            return ""
        try:
            same = os.stat(self.path).st_ino == self._ino
        except OSError:
            same = False
        if same:
            return ""
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = None
        try:
            self.path.unlink()
        except OSError:
            pass
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, str(os.getpid()).encode())
            self._fd, self._ino = fd, os.fstat(fd).st_ino
        except OSError:
            pass
        return f"deleted or replaced the session's lock file {self.path.name}"

    def _release_dir(self) -> None:
        if self._dir_fd is not None:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._dir_fd)
                self._dir_fd = None

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        self._release_dir()


class StateFile:
    """`state.json`. Experiments in flight are kept per iteration (`inflight_runs`: started,
    `pending_commits`: committed, not yet started), so that several at once survive a crash;
    the single `inflight` / `pending` entries of older versions are still read."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "state.json"
        self._lock = threading.Lock()  # slots update it from several threads

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True, default=str))

    def update(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            data = self.read()
            for k, v in changes.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
            self.write(data)
            return data

    def set_item(self, key: str, n: int, value: dict[str, Any] | None, **also: Any) -> None:
        """Set (None: remove) entry `n` of the table `key`; `also`: more entries of other tables
        to set or remove in the same write, as `table=(n, value)`."""
        with self._lock:
            data = self.read()
            for k, (i, v) in {key: (n, value), **also}.items():
                table = data.get(k) if isinstance(data.get(k), dict) else {}
                if v is None:
                    table.pop(str(i), None)
                else:
                    table[str(i)] = v
                if table:
                    data[k] = table
                else:
                    data.pop(k, None)
            self.write(data)

    def entries(self, key: str, legacy: str) -> list[dict[str, Any]]:
        """The entries of table `key`, plus the older single entry `legacy` if present."""
        data = self.read()
        out = [v for v in (data.get(key) or {}).values() if isinstance(v, dict)]
        old = data.get(legacy)
        if isinstance(old, dict) and "iteration" in old:
            out.append(old)
        return sorted(out, key=lambda v: int(v.get("iteration", 0)))
