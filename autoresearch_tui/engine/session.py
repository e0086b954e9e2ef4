"""The session: setup, resume, the lock, shutdown and the summary — and the only command API a
UI calls. It owns the parts (`Ctx`, the event bus, the gate, the scheduler, the executor) and
knows nothing about any UI: subscribers get typed events (`events.py`).

Commands are plain methods to be called on the session's event loop (pause, resume,
stop_after_run, stop_now, kill_run, detach, override, add_idea); queries (`git_log`,
`experiment_detail`) do blocking work and belong in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Callable

from .. import config as config_mod
from ..proposers import sweep
from ..proposers.base import Proposer
from . import details, gitguard
from .bus import EventBus
from .context import Ctx, now
from .events import BacklogChanged, Event, HistoryLoaded, Phase, PlatformDetected, SessionEnded, SessionStarted
from .executors import LocalExecutor
from .executors.base import Executor
from .gate import Gate, read_files
from .ledger import GitError
from .notes import clean_idea
from .records import History, RunRecord
from .recovery import recover
from .scheduler import Scheduler
from .setup import (SetupError, cached_platform, cleanup_worktrees_sync, detect_in_background, remote_state, restore_branch_sync,
                    setup_slots_sync, setup_sync)
from .state import SessionLock
from .recording import write_notes

__all__ = ["Session", "SetupError"]


class Session:
    def __init__(self, cfg: config_mod.Config, proposer: Proposer, max_iterations: int | None = None,
                 platform: dict[str, Any] | None = None, poll_s: float = 0.05, executor: Executor | None = None,
                 fallback: Proposer | None = None):
        self.cfg = cfg
        self.root = cfg.root
        self.bus = EventBus()
        self.bus.on_error = self._subscriber_failed
        self.ctx = Ctx(cfg, proposer, executor or LocalExecutor(), self.bus, platform, poll_s)
        self.ctx.fallback = fallback
        self.ctx.max_iterations = cfg.research.max_iterations if max_iterations is None else max_iterations
        self._platform_given = platform is not None
        self.lock = SessionLock(self.ctx.paths.state_dir, anchor=self.root)
        self.gate = Gate(self.ctx)
        self.resumed = False
        self.start_branch = ""
        self.started_at = now()
        self.end_reason = ""
        self._broken_subscribers: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_said: set[str] = set()
        if hasattr(self.ctx.executor, "observer"):
            self.ctx.executor.observer = lambda handle, state: remote_state(self.ctx, self._pending_said, handle, state)

    # ----------------------------------------------------------- for callers
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self.bus.subscribe(fn)

    @property
    def history(self) -> History:
        return self.ctx.history

    @property
    def records(self) -> list[RunRecord]:
        return self.ctx.history.records

    @property
    def phase(self) -> str:
        return self.ctx.phase

    @property
    def paused(self) -> bool:
        return self.ctx.control.paused

    @property
    def stopping(self) -> bool:
        return self.ctx.control.stopping

    @property
    def detaching(self) -> bool:
        return self.ctx.control.detaching

    @property
    def current_run(self) -> Any:
        """The handle of a run in flight (the first slot's), or None."""
        running = self.ctx.running_slots()
        return running[0].handle if running else None

    @property
    def total_cost(self) -> float:
        return self.ctx.total_cost

    @property
    def metric_name(self) -> str:
        return self.cfg.metric.name

    # -------------------------------------------------------------- commands
    def _wake(self) -> None:
        """Wake the loop; safe from any thread (an idea is queued from a worker thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.ctx.control.wake.set)
                return
            except RuntimeError:
                pass
        self.ctx.control.wake.set()

    def pause(self) -> None:
        self.ctx.pause("paused: the current run (if any) finishes; no new experiment starts")

    def resume(self) -> None:
        if self.ctx.control.paused:
            self.ctx.control.paused = False
            self.ctx.notice("resumed")
            self.ctx.set_phase(self.ctx.phase if self.ctx.phase != Phase.PAUSED else Phase.PROPOSING)
            self._wake()

    def stop_after_run(self) -> None:
        if self.ctx.phase == Phase.STOPPED:
            return
        self.ctx.control.stopping = True
        self.gate.cancel_requests()
        self.ctx.set_phase(Phase.STOPPING, detail="stops after the current run")
        self._wake()

    def stop_now(self) -> None:
        if self.ctx.phase == Phase.STOPPED:
            return
        c = self.ctx.control
        c.stopping = True
        c.stop_kill = "killed: the session was stopped by the user"
        for slot in self.ctx.slots:
            slot.request_kill(c.stop_kill, even_idle=True)  # also a run that is starting right now
        self.gate.cancel_requests()
        self.ctx.set_phase(Phase.STOPPING, detail="stopping now")
        self._wake()

    def kill_run(self, slot: int | None = None) -> bool:
        """Kill the run in `slot` (None: in every slot)."""
        return any([s.request_kill("killed by the user") for s in self.ctx.slots if slot is None or s.index == slot])

    @property
    def slots(self) -> list[Any]:
        """The slots' lines (events.SlotView)."""
        r = self.cfg.research
        return [s.view(r.time_budget_s, r.effective_timeout) for s in self.ctx.slots]

    def detach(self) -> None:
        """Quit without touching a running experiment; the next start re-attaches to it."""
        c = self.ctx.control
        c.detaching = c.stopping = True
        self.gate.cancel_requests()
        self._wake()

    def override(self, iteration: int, status: str) -> None:
        if status not in ("keep", "discard"):
            raise ValueError(status)
        self.ctx.control.overrides.append((iteration, status))
        if self.ctx.running_slots():
            self.ctx.notice(f"#{iteration} will be marked {status} when the current run ends")
        self._wake()

    def add_idea(self, text: str) -> bool:
        """Queue an idea for the next proposal (blocking file work: call it in a thread)."""
        text = clean_idea(text)
        if not text:
            return False
        ideas = self.ctx.notes.add(text)
        self.bus.emit(BacklogChanged([i.to_dict() for i in ideas]))
        self._wake()
        return True

    @property
    def idea_format(self) -> str:
        return self.ctx.proposer.idea_format

    def idea_problem(self, text: str) -> str | None:
        """Why the current proposer will not act on this idea, or None (reads the in-scope files:
        call it in a thread)."""
        files = read_files(self.ctx, self.cfg.research.files_in_scope)
        text = clean_idea(text)
        if sweep.parse(text) is not None:
            try:
                sweep.proposals(text, files)
            except sweep.SweepError as e:
                return f"this sweep cannot run: {e}"
            return None
        return self.ctx.proposer.idea_problem(text, files)

    def abandon(self) -> None:
        """Last resort when the event loop is gone (the app closed): kill what still runs —
        unless the user chose to leave it running — and release the lock."""
        for slot in self.ctx.running_slots():
            if not self.ctx.control.leaves_alive(slot.kind):
                self.ctx.executor.kill(slot.handle, self.cfg.research.kill_grace_s)  # type: ignore[arg-type]
        self.lock.release()

    # --------------------------------------------------------------- queries
    def git_log(self, n: int = 25) -> list[tuple[str, str]]:
        return self.ctx.ledger.log(n)

    def experiment_diff(self, rec: RunRecord) -> str:
        return details.experiment_diff(self.ctx, rec)

    def experiment_detail(self, rec: RunRecord) -> str:
        return details.experiment_detail(self.ctx, rec)

    def curve_text(self, rec: RunRecord, width: int = 70, height: int = 10) -> str:
        return details.curve_text(self.ctx, rec, width, height)

    def experiment_answers(self, rec: RunRecord) -> str:
        return details.experiment_answers(self.ctx, rec)

    # ------------------------------------------------------------------ main
    async def run(self) -> str:
        """Run the session until stopped or bounded. Returns why it ended."""
        ctx = self.ctx
        loop = self._loop = asyncio.get_running_loop()
        self.bus.bind(loop)
        ctx.control.wake = asyncio.Event()
        for slot in ctx.slots:
            slot.kill = asyncio.Event()
        try:
            self.resumed, self.start_branch, notices = await ctx.thread(setup_sync, ctx, self.lock)
            slot_note = await ctx.thread(setup_slots_sync, ctx)
            ctx.git_baseline = await ctx.thread(gitguard.snapshot, ctx.ledger)
            for slot in ctx.slots:
                slot.kill = asyncio.Event()
        except SetupError:
            self.lock.release()
            raise
        except GitError as e:
            self.lock.release()
            raise SetupError(f"{self.root}: {e}") from None
        except BaseException:
            self.lock.release()
            raise
        try:
            self._platform(loop)
            cfg, r = self.cfg, self.cfg.research
            self.bus.emit(SessionStarted(
                branch=cfg.branch, tag=cfg.tag, start_branch=self.start_branch, resumed=self.resumed, metric=cfg.metric.name,
                direction=cfg.metric.direction, max_iterations=ctx.max_iterations, time_budget_s=r.time_budget_s,
                platform=dict(ctx.platform), proposer=ctx.proposer.name, slots=[list(s.gpus) for s in ctx.slots],
            ))
            for n in notices:
                ctx.notice(n, "warning")
            if slot_note:
                ctx.notice(slot_note)
            ctx.emit_slots()
            h = ctx.history
            best, base = h.best(), h.baseline()
            self.bus.emit(HistoryLoaded([replace(r) for r in h.records], best and replace(best), base and replace(base)))
            self.bus.emit(BacklogChanged([i.to_dict() for i in ctx.notes.ideas()]))
            # always, also after an early stop: a run still alive from before is re-attached
            # (and killed by "stop now") before anything touches the branch under it
            await recover(ctx)
            ctx.experiments_this_session = 0  # a recovered run belongs to the earlier session
            msg = await ctx.thread(restore_branch_sync, ctx)
            if msg:
                ctx.notice(msg, "warning")
            await ctx.thread(write_notes, ctx)
            self.end_reason = await Scheduler(ctx, self.gate).loop()
        except asyncio.CancelledError:
            self.end_reason = ctx.control.stop_reason() if ctx.control.detaching else "cancelled"
            raise
        finally:
            await self._shutdown()
        return self.end_reason

    def _platform(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use the cached platform at once; otherwise detect it beside the first run."""
        ctx = self.ctx
        if self._platform_given:
            return
        cached = cached_platform(ctx)
        if cached is not None:
            ctx.platform = cached
            return

        def done(data: dict[str, Any]) -> None:
            def apply() -> None:
                ctx.platform = data
                self.bus.emit(PlatformDetected(dict(data)))

            try:
                loop.call_soon_threadsafe(apply)
            except RuntimeError:
                pass  # the session ended first

        detect_in_background(ctx, done)

    async def _shutdown(self) -> None:
        ctx = self.ctx
        self.gate.cancel_requests()
        for slot in ctx.running_slots():  # never leave a run behind (a cancelled worker lands here)
            if not ctx.control.leaves_alive(slot.kind):
                await asyncio.shield(ctx.thread(ctx.executor.kill, slot.handle, self.cfg.research.kill_grace_s))
        try:
            await asyncio.shield(ctx.thread(cleanup_worktrees_sync, ctx))
        except Exception as e:  # noqa: BLE001 - a leftover worktree is removed at the next start
            ctx.notice(f"the slots' worktrees could not be removed ({e}); the next start removes them", "warning")
        try:
            await ctx.proposer.aclose()
        except Exception:  # noqa: BLE001
            pass
        try:
            reason = self.end_reason or "ended"
            if ctx.history.records:
                from ..summary import write_summary

                try:
                    path, text = await ctx.thread(write_summary, self.cfg, ctx.history, ctx.platform, ctx.total_cost, self.started_at)
                except OSError as e:
                    ctx.notice(f"the summary could not be written ({e}); `autoresearch-tui summary` writes it later", "error")
                    self.bus.emit(SessionEnded(reason))
                else:
                    self.bus.emit(SessionEnded(reason, str(path), text))
            else:
                self.bus.emit(SessionEnded(reason))
        finally:
            ctx.set_phase(Phase.STOPPED)
            self.lock.release()

    def _subscriber_failed(self, fn: Callable, ev: Event, tb: str) -> None:
        path = self.ctx.paths.state_dir / "errors.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"--- {now():.3f} subscriber {fn!r} on {type(ev).__name__}\n{tb}\n")
        except OSError:
            pass
        if id(fn) not in self._broken_subscribers:
            self._broken_subscribers.add(id(fn))
            self.ctx.notice(f"a display of the session failed on {type(ev).__name__} ({tb.strip().splitlines()[-1]}); "
                            f"details in {path}", "error")

