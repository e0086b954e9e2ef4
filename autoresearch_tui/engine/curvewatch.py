"""Following a run's curve while it trains: read from the log about once a second, shown to the
UI (`CurveUpdated`), compared with the best run's curve for early stopping (experiments only),
and saved with the record at the end. See `curves` for the reading and the rule."""

from __future__ import annotations

import asyncio
import re

from . import curves
from .context import Ctx, Slot, now
from .events import CurveUpdated
from .executors.base import Handle, RunSpec
from .records import RunRecord
from .runner import RunOutcome


async def follow_run(ctx: Ctx, slot: Slot, spec: RunSpec, rec: RunRecord, handle: Handle) -> tuple[Handle, RunOutcome]:
    """Wait for the run in `slot` while its curve is read from the log (and compared with the
    best run's, to stop it early); the curve is saved with the record."""
    watcher = CurveWatch(ctx, slot, rec, handle)
    task = asyncio.ensure_future(watcher.loop())
    try:
        return await ctx.run_in_slot(slot, spec, handle)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ctx.thread(watcher.finish)


class CurveWatch:
    """The curve of one run, read about once a second; early stopping when it is set and a best
    curve exists (only for experiments: never the baseline or a re-measurement)."""

    def __init__(self, ctx: Ctx, slot: Slot, rec: RunRecord, handle: Handle):
        m, r = ctx.cfg.metric, ctx.cfg.research
        self.ctx, self.slot, self.rec, self.handle = ctx, slot, rec, handle
        self.curve = curves.Curve(r.time_budget_s, re.compile(m.progress_pattern) if m.progress_pattern else None)
        h = ctx.history
        best = h.best()
        ref = best if best is not None and best.curve and not best.early_stop else None
        self.best_iteration = ref.iteration if ref else None
        self.best = curves.load(ctx.root / ref.curve) if ref else []
        base = h.baseline()
        self.baseline = curves.load(ctx.root / base.curve) if base is not None and base.curve else []
        self.repeats = [c for c in (curves.load(ctx.root / x.curve) for x in h.records if x.is_baseline and x.curve) if c]
        self.setting = curves.SETTINGS.get(r.early_stop)
        self.stopped = ""

    async def loop(self) -> None:
        ctx, n = self.ctx, self.rec.iteration
        said_none = False
        while True:
            await asyncio.sleep(1.0)
            elapsed = now() - self.handle.started_at if getattr(self.handle, "running", True) else 0.0
            grew = await ctx.thread(self.curve.read, self.handle.log_path, max(0.0, elapsed))
            if not grew:
                if not self.curve.points and not said_none and elapsed > min(30.0, ctx.cfg.research.time_budget_s / 3):
                    said_none = True
                    ctx.bus.emit(CurveUpdated(n, self.slot.index, [], self.best, self.baseline, self.best_iteration,
                                              "no curve in the log (print 'step N (P%) | loss: X' or set progress_pattern): nothing is stopped early"))
                continue
            why = ""
            if self.setting is not None and self.rec.is_experiment and self.best and not self.slot.kill.is_set():
                why = curves.verdict(self.curve.points, self.best, self.repeats, self.setting, ctx.cfg.metric.direction)
                if why and self.slot.request_kill(why):
                    self.stopped = why
                    ctx.notice(f"#{n} {why}")
            ctx.bus.emit(CurveUpdated(n, self.slot.index, list(self.curve.points), self.best, self.baseline, self.best_iteration, why))

    def finish(self) -> None:
        """(blocking) The last lines, then the curve saved with the record."""
        self.curve.read(self.handle.log_path, max(0.0, now() - self.handle.started_at))
        if self.curve.points:
            path = self.ctx.paths.curve(self.rec.iteration)
            try:
                curves.save(path, self.curve.points)
                self.rec.curve = str(path.relative_to(self.ctx.root))
            except OSError:
                pass
