"""Recording an experiment: the row appended (fsynced) before the branch moves, then the
branch, the notes and the events; the progress line every ten experiments."""

from __future__ import annotations

from dataclasses import replace

from ..fsio import fmt_metric
from .context import Ctx, Slot
from .events import Decision, Phase, ProgressReport
from .notes import render_notes
from .records import RunRecord


async def record(ctx: Ctx, rec: RunRecord, slot: Slot | None = None) -> None:
    """Append the row (fsynced), then move the branch, update notes and tell the subscribers."""
    n, status = rec.iteration, rec.status
    await ctx.thread(ctx.results.append, rec.to_dict())
    ctx.history.add(rec)
    ctx.in_flight.pop(n, None)
    if rec.is_experiment:
        ctx.experiments_this_session += 1
    if rec.is_remeasure and status == "crash":
        ctx.notice(f"the re-measurement after the override of #{rec.remeasure_of} crashed; the branch goes back to the best measured commit",
                   "error")
    await ctx.thread(_after_record_sync, ctx, rec)
    if rec.idea:
        outcome = f"#{n} {status}" + (f" ({fmt_metric(rec.metric)})" if rec.metric is not None else "")
        await ctx.thread(ctx.mark_idea, rec.idea, "tried", outcome)
    ctx.set_phase({"keep": Phase.KEPT, "discard": Phase.DISCARDED, "crash": Phase.CRASHED}[status], n, rec.description, slot=slot)
    h = ctx.history
    best, base = h.best(), h.baseline()
    # copies: a subscriber must not see a record change after the event (an override does that)
    ctx.bus.emit(Decision(replace(rec), best and replace(best), base and replace(base), ctx.experiments_this_session))
    done = len(h.experiments())
    if done and done % 10 == 0 and rec.is_experiment:
        ctx.bus.emit(ProgressReport(done, progress_line(ctx)))


def _after_record_sync(ctx: Ctx, rec: RunRecord) -> None:
    target = ctx.best_commit()
    if target and rec.status != "keep":
        # check_git_after_run has just put HEAD back on the research branch if a run moved it
        ctx.ledger.reset_hard(target, verified=len(rec.commit) == 40)
    elif rec.status == "keep":
        # the branch moves to the kept commit (made in a slot's worktree), or the run may have
        # changed tracked files: back to exactly the kept commit
        if ctx.own_trees or ctx.ledger.tracked_changes():
            ctx.ledger.reset_hard(rec.commit)
    ctx.state.set_item("inflight_runs", rec.iteration, None, pending_commits=(rec.iteration, None))
    write_notes(ctx)


def write_notes(ctx: Ctx) -> None:
    before, after = render_notes(ctx.cfg, ctx.history, ctx.platform)
    ctx.notes.rewrite(before, after)


def progress_line(ctx: Ctx) -> str:
    h = ctx.history
    c = h.counts()
    done = c["keep"] + c["discard"] + c["crash"]
    best, base = h.best(), h.baseline()
    if best is None or best.metric is None:
        b = "best —"
    else:
        pct = f" ({(best.metric - base.metric) / abs(base.metric) * 100:+.2f}% vs baseline)" if base and base.metric else ""
        b = f"best {fmt_metric(best.metric)}{pct}"
    return f"=== Iteration {done}: {b}, {c['keep']} keep / {c['discard']} discard / {c['crash']} crash ==="
