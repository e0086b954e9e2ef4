"""`.autoresearch/`: the instance lock and the small state file used to resume."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text


class LockedError(Exception):
    pass


class SessionLock:
    """An exclusive `flock` on `.autoresearch/lock`; released by the kernel if the app dies."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise LockedError(
                f"{self.path}: another autoresearch-tui (pid {other}) is running in this repository; "
                "attach to its tmux window, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


class StateFile:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "state.json"

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
        data = self.read()
        for k, v in changes.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        self.write(data)
        return data
