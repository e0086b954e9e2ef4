"""What runs next in each slot, and when the session ends.

One worker per slot; every free slot takes the next job at once. Order: the baseline (in one
slot; the others wait for it) and its repeats (over free slots, for the noise estimate) → the
user's overrides and their re-measurements (nothing new starts until the branch head is
measured) → proposals. A slot whose experiment beat the best it started from while the best
moved re-applies it onto the new best and runs that next (see `trial`).

Iteration numbers are given when an experiment starts (`Ctx.allocate`); rows are recorded when
it ends. The session ends on a stop, at `max_iterations` (experiments started in this session;
runs in flight finish), when the proposer has nothing left, or on an error it cannot work around
(full disk, broken repository): then no slot starts anything new and the runs in flight finish.
"""

from __future__ import annotations

import asyncio

from .context import Ctx, Slot
from .events import Phase
from .gate import Gate, Ready
from .ledger import GitError
from .overrides import apply_pending
from .jobs import Job, Sweep
from .moving import finish_sweep, sweep_ready
from .trial import prepare, run, withdraw


class Scheduler:
    def __init__(self, ctx: Ctx, gate: Gate):
        self.ctx = ctx
        self.gate = gate
        self.held: dict[int, Ready] = {}  # slot -> a proposal that came while the loop was paused
        self.end_reason = ""
        self._running: dict[str, int] = {"baseline": 0, "repeat": 0, "remeasure": 0, "experiment": 0, "proposing": 0}
        self._baseline_tried = False
        self._tick = asyncio.Event()
        self.queue: list[Job] = []  # jobs waiting for a free slot (the values of a sweep)
        self.sweeps: list[tuple[Sweep, Slot]] = []  # open sweeps, and the slot that last ran one of their values

    # ------------------------------------------------------------- helpers
    def _notify(self) -> None:
        """Something changed (a row recorded, a job started or ended): waiting workers look again."""
        self._tick.set()
        self._tick = asyncio.Event()

    async def _wait(self, timeout: float = 0.5) -> None:
        try:
            await asyncio.wait_for(self._tick.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _end(self, reason: str) -> None:
        if not self.end_reason:
            self.end_reason = reason
        self._notify()

    @staticmethod
    def _counter(job: Job) -> str:
        if job.kind == "baseline":
            return "repeat" if job.repeat > 1 else "baseline"
        return "remeasure" if job.kind == "remeasure" else "experiment"

    # ----------------------------------------------------------------- run
    async def _run(self, slot: Slot, job: Job) -> Job | None:
        """Prepare and run one job in `slot` — unless a stop came first: then nothing starts.
        Returns the job the slot runs next at once (a re-application), or None."""
        ctx = self.ctx
        key = self._counter(job)
        self._running[key] += 1
        h = job.ready[2] if job.ready is not None else ""
        try:
            if ctx.control.stopping:
                return None
            rec = await prepare(ctx, slot, job)
            if ctx.control.stopping:
                # prepared, never run: take it back (its ref and number too; the idea goes back to the queue)
                await ctx.thread(withdraw, ctx, slot, rec)
                if job.sweep is not None:
                    job.sweep.drop()
                return None
            if job.sweep is not None:
                self.sweeps = [(s, sl) for s, sl in self.sweeps if s is not job.sweep] + [(job.sweep, slot)]
            return await run(ctx, slot, rec, job, on_started=lambda r: self._started(job, r.commit))
        finally:
            self._running[key] -= 1
            if h:
                self.gate.release(h)
            if key == "baseline":
                self._baseline_tried = True
            if slot.state != "idle":
                ctx.slot_state(slot, "idle")
            self._notify()

    def _started(self, job: Job, commit: str) -> None:
        if job.kind != "remeasure":
            # the next proposal is prepared while this run trains (during the baseline too)
            baseline = job.kind == "baseline"
            self.gate.start_prefetch(during_baseline=baseline, base=commit if baseline else "")

    async def loop(self) -> str:
        slots = self.ctx.slots
        if len(slots) == 1:
            await self._worker(slots[0])
        else:
            await asyncio.gather(*(self._worker(s) for s in slots))
        for sweep, slot in self.sweeps:  # a stop came before every value ran: decide on those that did
            for job in self.queue:
                if job.sweep is sweep:
                    sweep.drop()
            if sweep.measured and not sweep.decided:
                await finish_sweep(self.ctx, slot, sweep)
        return self.end_reason or self.ctx.control.stop_reason()

    async def _worker(self, slot: Slot) -> None:
        try:
            while True:
                job = await self._next_job(slot)
                if job is None:
                    return
                while job is not None:
                    job = await self._run(slot, job)
        except (OSError, GitError) as e:
            # a full disk, a broken repository: nothing new starts; what was recorded stays, runs
            # in flight elsewhere finish, and the next start recovers the interrupted experiment
            msg = f"stopped by an error the loop cannot work around: {e}; fix it and start again (the session resumes)"
            self.ctx.notice(msg, "error")
            self.ctx.control.stopping = True
            self.end_reason = msg
            self._notify()
            self.ctx.control.wake.set()

    async def _expand_sweep(self) -> bool:
        """The first queued idea is a sweep: queue one job per value (free slots take them)."""
        ctx = self.ctx
        found = await ctx.thread(sweep_ready, self.gate)
        if found is None:
            return False
        idea, ready = found
        if isinstance(ready, str):
            await ctx.thread(ctx.mark_idea, idea, "skipped", f"cannot sweep: {ready}")
            ctx.notice(f"sweep skipped: {ready}", "warning")
            return True
        try:
            for r in ready:
                self.gate.reserve(r[0], r[2])
        except Exception:  # noqa: BLE001 - another slot took one meanwhile: ask again
            for r in ready:
                if self.gate.reserved.get(r[2]) is r[0]:
                    self.gate.release(r[2])
            return True
        group = Sweep(idea, len(ready))
        self.queue += [Job("proposal", ready=r, sweep=group) for r in ready]
        ctx.notice(f"sweep: {len(ready)} experiments ({', '.join(r[0].description for r in ready)}) over the free slots")
        self._notify()
        return True

    # ------------------------------------------------------------ next job
    async def _next_job(self, slot: Slot) -> Job | None:
        ctx, h, c, running = self.ctx, self.ctx.history, self.ctx.control, self._running
        while True:
            if self.end_reason:
                return None
            if c.stopping:
                self._end(c.stop_reason())
                return None
            if ctx.follow_ups:
                return ctx.follow_ups.pop(0)
            # the baseline, in one slot; the others wait for it
            if h.best() is None and not h.pending_remeasure():
                if running["baseline"]:
                    await self._wait()
                    continue
                if self._baseline_tried:
                    last = h.records[-1] if h.records else None
                    why = (last.crash_reason if last else "") or "no metric"
                    self._end(f"the baseline run crashed ({why}); see run.log, fix the command and start again")
                    return None
                return Job("baseline")
            # repeated baseline runs measure the noise (only before the first experiment)
            if not h.experiments() and not running["experiment"]:
                todo = ctx.cfg.metric.baseline_runs - h.baseline_runs_done() - running["repeat"]
                if todo > 0:
                    return Job("baseline", repeat=h.baseline_runs_done() + running["repeat"] + 1)
                if running["repeat"]:
                    await self._wait()
                    continue
            await apply_pending(ctx)
            if c.stopping:
                continue
            if c.paused:
                if not ctx.running_slots():
                    ctx.set_phase(Phase.PAUSED)
                await c.sleep(1.0)
                continue
            pending = h.pending_remeasure()
            if pending:
                if running["remeasure"]:
                    await self._wait()
                    continue
                return Job("remeasure", remeasure_of=pending["of"])
            if self.queue:
                return self.queue.pop(0)
            if await self._expand_sweep():
                continue
            # (no await between this check and the claim below: two slots never both take the last one)
            if ctx.max_iterations and ctx.experiments_this_session + running["experiment"] + running["proposing"] >= ctx.max_iterations:
                if not running["experiment"] and not running["proposing"]:
                    self._end(f"reached max_iterations ({ctx.max_iterations})")
                    return None
                await self._wait()  # the last ones run elsewhere; one of them may be re-applied here
                continue
            ctx.slot_state(slot, Phase.PROPOSING, ctx.peek_iteration())
            held = self.held.pop(slot.index, None)
            running["proposing"] += 1
            try:
                ready = await self.gate.recheck(held) if held is not None else await self.gate.next(ctx.peek_iteration())
            finally:
                running["proposing"] -= 1
                self._notify()
            if ready is None:
                ctx.slot_state(slot, "idle")
                if self.gate.end_reason:
                    self._end(self.gate.end_reason)
                    return None
                continue
            if c.paused or c.stopping or c.overrides or self.end_reason or h.pending_remeasure():
                # paused while the model thought: nothing starts; the proposal waits (checked again)
                if c.stopping or self.end_reason:
                    self.gate.release(ready[2])
                else:
                    self.held[slot.index] = ready
                ctx.slot_state(slot, "idle")
                continue
            return Job("proposal", ready=ready)
