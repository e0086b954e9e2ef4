"""What the engine's parts share: the collaborators of one session, the user's commands as
flags, and the slots.

A **slot** is where one experiment runs: a working directory (the repository itself with one
slot; a git worktree of its own under `.autoresearch/worktrees/` with several), its GPUs and
environment, plus the run in flight there and the means to kill it. Nothing in the engine
assumes one slot: commands that act on "the run" act on every slot.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import config as config_mod
from ..proposers.base import Proposer
from . import sandbox, trackers
from .bus import EventBus
from .events import BacklogChanged, Notice, Phase, PhaseChanged, SlotsChanged, SlotView
from .executors.base import Executor, Handle, RunSpec
from .ledger import Ledger
from .notes import Notes
from .paths import Paths
from .records import History
from .results import ResultsStore
from .runner import RunOutcome
from .state import StateFile


def now() -> float:
    return time.time()


@dataclass
class Slot:
    index: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    handle: Handle | None = None
    kind: str = ""  # what runs there now: run | confirm | guard
    kill: asyncio.Event = field(default_factory=asyncio.Event)
    kill_reason: str = ""
    gpus: list[str] = field(default_factory=list)
    ledger: Ledger | None = None  # its own worktree's; None = the repository itself (one slot)
    # what the UI shows
    state: str = "idle"  # idle | proposing | committing | running | measuring | confirming
    iteration: int = 0
    description: str = ""
    started_at: float = 0.0
    log_path: str = ""
    evaluator_stat: dict[str, Any] = field(default_factory=dict)  # the read-only files just before its run

    def view(self, budget_s: float, timeout_s: float) -> SlotView:
        return SlotView(self.index, list(self.gpus), self.state, self.iteration, self.description, self.started_at,
                        budget_s, timeout_s, self.log_path)

    def request_kill(self, reason: str, even_idle: bool = False) -> bool:
        """Kill what runs here. `even_idle`: also a run that is about to start (a stop)."""
        if self.handle is None and not even_idle:
            return False
        self.kill_reason = reason
        self.kill.set()
        return self.handle is not None

    def clear_kill(self, control: "Control") -> None:
        """A new experiment starts: forget an old kill request, but never a stop's."""
        self.kill.clear()
        self.kill_reason = ""
        if control.stop_kill:
            self.request_kill(control.stop_kill, even_idle=True)


@dataclass
class Control:
    """The user's commands, as state the loop reads between steps."""

    paused: bool = False
    stopping: bool = False
    detaching: bool = False
    stop_kill: str = ""  # "stop now": the reason every run, present or about to start, is killed with
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overrides: list[tuple[int, str]] = field(default_factory=list)

    async def sleep(self, timeout: float) -> None:
        """Until a command arrives or `timeout` passes (at once when stopping). The wake flag is
        cleared after waking, so a command that came just before the sleep is not lost."""
        if self.stopping:
            return
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self.wake.clear()

    def stop_reason(self) -> str:
        return "detached: the run goes on and will be re-attached" if self.detaching else "stopped by the user"

    def leaves_alive(self, kind: str) -> bool:
        """Detach leaves the experiment's own run going (the next start re-attaches to it); a
        confirmation or guard run is not re-attachable and never outlives the app."""
        return self.detaching and kind == "run"


class Ctx:
    def __init__(self, cfg: config_mod.Config, proposer: Proposer, executor: Executor, bus: EventBus,
                 platform: dict[str, Any] | None, poll_s: float):
        self.cfg = cfg
        self.root = cfg.root
        self.paths = Paths(cfg.root)
        self.ledger = Ledger(self.root, cfg.tag)
        self.results = ResultsStore(self.root, cfg.research.results_file, cfg.metric.name)
        self.state = StateFile(self.paths.state_dir)
        self.notes = Notes(self.root)
        self.proposer = proposer
        self.fallback: Proposer | None = None  # runs a slot's next experiment when the model's round failed
        self.executor = executor
        self.bus = bus
        self.history = History(direction=cfg.metric.direction)
        self.platform: dict[str, Any] = dict(platform or {})
        self.poll_s = poll_s
        self.control = Control()
        self.slots = [Slot(0, self.root)]
        self.sets_gpus = True  # False where the scheduler (Slurm) gives each run its GPUs
        self.links: list[str] = []  # untracked top-level names linked into each slot's worktree
        self.follow_ups: list[Any] = []  # trial.Job: re-applications found while recovering, run first
        self.in_flight: dict[int, Any] = {}  # iteration -> RunRecord of experiments started, not yet recorded
        self.record_lock = asyncio.Lock()  # decisions, rows and branch moves happen one at a time
        self.phase = Phase.STARTING
        self.readonly_hashes: dict[str, str] = {}
        self.lock: Any = None  # state.SessionLock, once held
        self.sandbox = ""  # the bwrap binary runs start under ('' = not sandboxed); set at setup
        self.git_baseline: Any = None  # integrity.GitSnapshot of what no run may change (set at setup)
        self.max_iterations = 0
        self.max_failed_rounds = 0
        self.experiments_this_session = 0
        self.total_cost = 0.0
        self.total_tokens = 0

    # ---------------------------------------------------------------- events
    def notice(self, text: str, level: str = "info") -> None:
        self.bus.emit(Notice(level, text))

    def set_phase(self, phase: str, iteration: int | None = None, detail: str = "", slot: Slot | None = None) -> None:
        self.phase = phase
        n = self.peek_iteration() if iteration is None else iteration
        c = self.control
        self.bus.emit(PhaseChanged(phase, n, detail, paused=c.paused, stopping=c.stopping, slot=slot.index if slot else 0))
        if slot is not None:
            self.slot_state(slot, phase, n, detail)

    def slot_state(self, slot: Slot, state: str, iteration: int = 0, detail: str = "") -> None:
        """A slot's line in the UI changed."""
        if state in (Phase.KEPT, Phase.DISCARDED, Phase.CRASHED, Phase.PAUSED, Phase.STOPPED):
            state = "idle"
        slot.state = state
        if iteration:
            slot.iteration = iteration
        if detail or state == "idle":
            slot.description = detail
        self.emit_slots()

    def emit_slots(self) -> None:
        r = self.cfg.research
        self.bus.emit(SlotsChanged([s.view(r.time_budget_s, r.effective_timeout) for s in self.slots]))

    @property
    def parallel(self) -> bool:
        return len(self.slots) > 1

    @property
    def own_trees(self) -> bool:
        """Experiments run in worktrees of their own (several slots, or a remote executor)."""
        return any(s.ledger is not None for s in self.slots)

    # ------------------------------------------------------------ iterations
    def peek_iteration(self) -> int:
        """The number the next experiment will get (numbers are given when an experiment starts)."""
        return max([self.history.next_iteration, *(n + 1 for n in self.in_flight)])

    def allocate(self, rec: Any) -> int:
        n = self.peek_iteration()
        rec.iteration = n
        self.in_flight[n] = rec
        return n

    # --------------------------------------------------------------- helpers
    @staticmethod
    def thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    def mark_idea(self, text: str, status: str, outcome: str) -> None:
        """(blocking) Set a backlog idea's status and tell the subscribers."""
        ideas = self.notes.mark(text, status, outcome)
        self.bus.emit(BacklogChanged([i.to_dict() for i in ideas]))

    def pause(self, why: str) -> None:
        if not self.control.paused and self.phase != Phase.STOPPED:
            self.control.paused = True
            self.notice(why, "warning" if "cap" in why else "info")
            if not self.running_slots():
                self.set_phase(Phase.PAUSED)
            self.control.wake.set()

    def best_commit(self) -> str | None:
        """The commit the research branch should stand on (a pending re-measurement's, else the best's)."""
        pending = self.history.pending_remeasure()
        if pending:
            return pending["commit"]
        best = self.history.best()
        return best.commit if best else None

    def running_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.handle is not None]

    def spec(self, slot: Slot, n: int, kind: str = "", command: str = "") -> RunSpec:
        r = self.cfg.research
        rec = self.in_flight.get(n)
        desc = rec.description if rec is not None else slot.description
        tracked = trackers.run_env(self.cfg.tag, n, slot.index, kind or "run", desc, os.environ)  # W&B, MLflow, trackio
        env = {**tracked, **slot.env, "AUTORESEARCH_SLOT": str(slot.index), "AUTORESEARCH_ITERATION": str(n)}
        if self.sets_gpus and (self.parallel or slot.gpus):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        box: list[str] = []
        if self.sandbox:
            box = sandbox.for_slot(self.sandbox, self.root, slot.workdir, r.results_file, self.cfg.path, r.read_only,
                                   r.program, r.writable, r.network)
        return RunSpec(n, command or r.command, slot.workdir, self.paths.log(n, kind), self.paths.exit_file(n, kind),
                       r.time_budget_s, r.effective_timeout, r.kill_grace_s, env, kind or "run", keep_env=list(r.keep_env),
                       sandbox=box, log_cap=int(r.log_max_mb * 1024 * 1024))

    async def start_in_slot(self, slot: Slot, spec: RunSpec, start: Callable[[], Handle]) -> Handle:
        """Run the blocking `start` in a thread and hold the handle in the slot. A cancellation
        while it starts still gets the handle (and kills the run unless it is left alive)."""
        fut = asyncio.ensure_future(self.thread(start))
        try:
            handle = await asyncio.shield(fut)
        except asyncio.CancelledError:
            handle = await fut
            if not self.control.leaves_alive(spec.kind):
                await asyncio.shield(self.thread(self.executor.kill, handle, spec.grace_s))
            raise
        slot.handle, slot.kind = handle, spec.kind
        return handle

    async def run_in_slot(self, slot: Slot, spec: RunSpec, handle: Handle | None = None) -> tuple[Handle, RunOutcome]:
        """Start (or, given a handle, follow) a run in `slot` until it ends. Whatever interrupts
        the wait (a cancellation, an error), the run's whole tree is killed — unless the user chose
        to leave the experiment running (detach)."""
        if handle is None:
            handle = await self.start_in_slot(slot, spec, lambda: self.executor.start(spec))
        slot.handle, slot.kind = handle, spec.kind
        try:
            outcome = await self.executor.wait(handle, spec, slot.kill, self.poll_s)
        except BaseException:
            if not self.control.leaves_alive(spec.kind):
                await asyncio.shield(self.thread(self.executor.kill, handle, spec.grace_s))
            raise
        finally:
            slot.handle, slot.kind = None, ""
        return handle, outcome
