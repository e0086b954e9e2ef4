"""The local executor: the run is a process tree on this machine (see `runner`)."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import runner
from ..runner import RunHandle, RunOutcome
from .base import RunSpec


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self._subreaper = False

    def start(self, spec: RunSpec) -> RunHandle:
        if not self._subreaper:  # orphans of a run are re-parented to us and stay findable
            self._subreaper = runner.become_subreaper() or True
            runner.hide_from_runs()
        return runner.start(spec.command, spec.cwd, spec.log_path, spec.exit_path, spec.budget_s, spec.env,
                            keep_env=spec.keep_env, sandbox=spec.sandbox)

    async def wait(self, handle: RunHandle, spec: RunSpec, kill: asyncio.Event, poll_s: float) -> RunOutcome:
        return await runner.wait(handle, spec.timeout_s, spec.grace_s, kill, poll_s, log_cap=spec.log_cap)

    def kill(self, handle: RunHandle, grace_s: float) -> int:
        return runner.kill_tree(handle, grace_s)

    def reattach(self, saved: dict[str, Any]) -> RunHandle | None:
        handle = RunHandle.from_state(saved)
        return handle if runner.is_alive(handle) else None

    def ended_while_away(self, saved: dict[str, Any], grace_s: float) -> tuple[RunHandle, RunOutcome]:
        handle = RunHandle.from_state(saved)
        left = runner.cleanup_leftovers(handle, grace_s)
        code = runner.read_exit_code(handle)
        try:
            ended = handle.log_path.stat().st_mtime
        except OSError:
            ended = handle.started_at
        return handle, RunOutcome(code, False, False, max(0.0, ended - handle.started_at), 0.0, left)
