"""Decisions when several experiments run at once: a win on a best that moved meanwhile is
re-applied onto the new best and re-measured (the branch head is always code that was measured),
and a sweep's values are decided together once all are measured."""

from __future__ import annotations

from typing import Any

from ..proposers import sweep
from . import worktrees
from .context import Ctx, Slot
from .decision import decide, deltas
from .gate import Ready, Rejected, read_files
from .jobs import Job, Sweep
from .ledger import GitError
from .records import RunRecord
from .recording import record


async def finish_sweep(ctx: Ctx, slot: Slot, sweep: Sweep) -> Job | None:
    """Every value of a sweep is measured: the best one is decided like any experiment (it must
    beat the best the sweep started from), the others are discarded with the reason."""
    sweep.decided = True
    sign = 1 if ctx.cfg.metric.direction == "minimize" else -1
    scored = [(r, b) for r, b in sweep.measured if r.metric is not None and not r.crash_reason]
    win = min(scored, key=lambda rb: sign * rb[0].metric)[0] if scored else None  # type: ignore[operator]
    others: list[RunRecord] = []
    for rec, basis in sorted(sweep.measured, key=lambda rb: rb[0].iteration):
        if rec is win:
            rec.status = await decide(ctx, slot, rec, basis)
            continue
        deltas(ctx, rec, basis)
        rec.status = "crash" if rec.crash_reason else "discard"
        if win is not None and not rec.crash_reason and not rec.discard_reason:
            rec.discard_reason = f"sweep: #{win.iteration} ({win.description}) measured better"
        others.append(rec)
    if win is None:
        return await conclude(ctx, slot, others[:-1], others[-1])
    return await conclude(ctx, slot, others, win)


async def conclude(ctx: Ctx, slot: Slot, first: list[RunRecord], rec: RunRecord) -> Job | None:
    """Record `first`, then `rec` — re-applied onto the best instead if the best moved while it ran."""
    follow: Job | None = None
    async with ctx.record_lock:
        for r in first:
            await record(ctx, r, slot)
        if rec.status == "keep" and rec.is_experiment and rec.parent and rec.parent != ctx.best_commit():
            follow = await ctx.thread(_reapply_sync, ctx, slot, rec)
        await record(ctx, rec, slot)
    return follow


MAX_REAPPLY = 2  # an experiment re-applied this many times (the best kept moving) is discarded


def _reapply_sync(ctx: Ctx, slot: Slot, rec: RunRecord) -> Job | None:
    """(blocking) `rec` beat the best it started from, but the best moved while it ran: its change
    is re-applied onto the new best (in this slot's worktree) and re-measured as a new experiment
    before it can be kept. The branch head is always code that was measured. `rec` itself is
    recorded as discard, with the reason."""
    target = ctx.best_commit() or ""
    best = ctx.history.best()
    now_best = f"#{best.iteration}" if best else target[:7]
    rec.status = "discard"
    depth = 0
    r: RunRecord | None = rec
    while r is not None and r.reapply_of is not None:
        depth += 1
        r = ctx.history.get(r.reapply_of)
    if slot.ledger is None or depth >= MAX_REAPPLY:
        rec.discard_reason = f"beat the best it started from, but the best moved to {now_best} meanwhile (re-applied {depth} time(s) already)"
        return None
    try:
        worktrees.checkout(slot.ledger, target, ctx.links, ctx.root)
        sha = slot.ledger.cherry_pick_onto_head(rec.commit, f"{rec.description}\n\nRe-applied from #{rec.iteration} onto {now_best}.")
    except GitError as e:
        rec.discard_reason = f"beat the best it started from, but no longer applies onto the new best {now_best}: {e}"
        return None
    rec.discard_reason = f"beat the best it started from; the best moved to {now_best} meanwhile: re-applied onto it and re-measured"
    first = RunRecord(iteration=rec.iteration, commit=sha, description=_reapplied(rec.description, now_best), hypothesis=rec.hypothesis,
                      idea=rec.idea, mutation=rec.mutation, lines_added=rec.lines_added, lines_removed=rec.lines_removed,
                      reapply_of=rec.iteration)
    return Job("reapply", reapply=first)


def _reapplied(desc: str, onto: str) -> str:
    desc = desc.split(" (re-applied onto ", 1)[0]
    return f"{desc} (re-applied onto {onto})"


def sweep_ready(gate: Any) -> tuple[str, list[Ready] | str] | None:
    """(blocking) When the first queued idea is a sweep: (the idea, its valid proposals, one per
    value — or why it cannot run). None when it is not a sweep."""
    ctx = gate.ctx
    taken = {p.idea for p in gate.reserved.values() if p.idea}
    first = next((i.text for i in ctx.notes.ideas() if i.status == "queued" and i.text not in taken), None)
    if first is None or sweep.parse(first) is None:
        return None
    files = read_files(ctx, ctx.cfg.research.files_in_scope)
    try:
        props = sweep.proposals(first, files)
    except sweep.SweepError as e:
        return first, str(e)
    out: list[Ready] = []
    for p in props:
        try:
            changed, h = gate.validate(p, files)
        except Rejected as e:
            ctx.notice(f"sweep: {p.description} skipped ({e})")
            continue
        out.append((p, changed, h))
    return first, out if out else "every value was tried before"
