"""The executor protocol: the only way the engine (and through it, the UI) touches a run.

A handle is whatever the executor needs to find its run again; `to_state()` makes it a plain
dict saved in `.autoresearch/state.json`, and `reattach()` turns that dict back into a handle
after a restart. Every handle has `log_path`, `started_at` and `pid` (0 where none is known).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..runner import RunOutcome


@dataclass
class RunSpec:
    """One command to run: an experiment, its confirmation run, or the guard."""

    iteration: int
    command: str
    cwd: Path
    log_path: Path
    exit_path: Path
    budget_s: float
    timeout_s: float
    grace_s: float
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "run"  # run | confirm | guard
    keep_env: list[str] = field(default_factory=list)  # secret-looking variables the run still gets
    sandbox: list[str] = field(default_factory=list)  # the bwrap argv the command runs under ([] = none)
    log_cap: int = 0  # bytes; a longer log keeps its head and tail (0 = no cap)


class Handle(Protocol):
    log_path: Path
    started_at: float
    pid: int

    def to_state(self) -> dict[str, Any]: ...


class Executor(Protocol):
    name: str

    def start(self, spec: RunSpec) -> Handle:
        """Start the run (blocking work: call it in a thread)."""

    async def wait(self, handle: Handle, spec: RunSpec, kill: asyncio.Event, poll_s: float) -> RunOutcome:
        """Until the run ends; kill it (whole tree) at its deadline or when `kill` is set."""

    def kill(self, handle: Handle, grace_s: float) -> int:
        """Kill the whole run now; returns how many processes survived (0 unless refused)."""

    def reattach(self, saved: dict[str, Any]) -> Handle | None:
        """The handle of a saved run that is still alive, else None."""

    def ended_while_away(self, saved: dict[str, Any], grace_s: float) -> tuple[Handle, RunOutcome]:
        """A saved run that is no longer alive: clean up what it left, and its outcome."""
