"""What runs next, and when the session ends.

Order: the baseline (and its repeats, for the noise estimate) → the user's overrides and their
re-measurements → proposals, one experiment at a time per slot. Iteration numbers are given
when an experiment is prepared. The loop ends on a stop, at `max_iterations` (experiments that
ran; failed proposal rounds are not experiments and have their own limit in the gate), when the
proposer has nothing left, or on an error it cannot work around (full disk, broken repository).
"""

from __future__ import annotations

from .context import Ctx, Slot
from .events import Phase
from .gate import Gate, Ready
from .ledger import GitError
from .overrides import apply_pending
from .records import RunRecord
from .trial import Job, prepare, run, withdraw


class Scheduler:
    def __init__(self, ctx: Ctx, gate: Gate):
        self.ctx = ctx
        self.gate = gate
        self.held: Ready | None = None  # a proposal that came while the loop was paused

    async def _run(self, slot: Slot, job: Job) -> RunRecord | None:
        """Prepare and run one job in `slot` — unless a stop came first: then nothing starts."""
        ctx = self.ctx
        if ctx.control.stopping:
            return None
        rec = await prepare(ctx, ctx.history.next_iteration, job)
        if job.ready is not None:
            self.gate.in_flight_hashes.add(job.ready[2])
        try:
            if ctx.control.stopping:
                if job.ready is not None:  # committed, never run: take it back, the idea goes back to the queue
                    await ctx.thread(withdraw, ctx, rec)
                return None
            return await run(ctx, slot, rec, on_started=lambda r: self._started(r, job))
        finally:
            if job.ready is not None:
                self.gate.in_flight_hashes.discard(job.ready[2])

    def _started(self, rec: RunRecord, job: Job) -> None:
        if job.kind != "remeasure":
            # the next proposal is prepared while this run trains (during the baseline too)
            baseline = job.kind == "baseline"
            self.gate.start_prefetch(during_baseline=baseline, base=rec.commit if baseline else "")

    async def loop(self) -> str:
        try:
            return await self._loop(self.ctx.slots[0])
        except (OSError, GitError) as e:
            # a full disk, a broken repository: stop cleanly; what was recorded stays, and the
            # next start recovers the interrupted experiment (re-attach, score, or crash)
            msg = f"stopped by an error the loop cannot work around: {e}; fix it and start again (the session resumes)"
            self.ctx.notice(msg, "error")
            return msg

    async def _loop(self, slot: Slot) -> str:
        ctx, h, c = self.ctx, self.ctx.history, self.ctx.control
        if h.best() is None and not h.pending_remeasure():
            if c.stopping:
                return c.stop_reason()
            await self._run(slot, Job("baseline"))
            if h.best() is None:
                if c.stopping:
                    return c.stop_reason()
                last = h.records[-1] if h.records else None
                why = (last.crash_reason if last else "") or "no metric"
                return f"the baseline run crashed ({why}); see run.log, fix the command and start again"
        # repeated baseline runs measure the noise (only before the first experiment)
        while not c.stopping and not h.experiments() and h.baseline_runs_done() < ctx.cfg.metric.baseline_runs:
            await self._run(slot, Job("baseline", repeat=h.baseline_runs_done() + 1))
        while True:
            await apply_pending(ctx)
            if c.stopping:
                return c.stop_reason()
            if ctx.max_iterations and ctx.experiments_this_session >= ctx.max_iterations:
                return f"reached max_iterations ({ctx.max_iterations})"
            if c.paused:
                ctx.set_phase(Phase.PAUSED)
                await c.sleep(1.0)
                continue
            pending = h.pending_remeasure()
            if pending:
                await self._run(slot, Job("remeasure", remeasure_of=pending["of"]))
                continue
            if self.held is not None:  # the branch may have moved meanwhile: check it again
                ready, self.held = await ctx.thread(self.gate.recheck, self.held), None
            else:
                ready = await self.gate.next(h.next_iteration)
            if ready is None:
                if self.gate.end_reason:
                    return self.gate.end_reason
                continue
            if c.paused or c.stopping or c.overrides:
                self.held = None if c.stopping else ready  # paused while the model thought: nothing starts
                continue
            await self._run(slot, Job("proposal", ready=ready))
