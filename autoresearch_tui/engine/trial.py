"""One experiment, from commit to record: commit (and ref) → run in a slot → measure → tamper
checks → decision → record (fsynced) → branch back on the best → notes and events.

The record is written before the branch moves, so a crash in between loses nothing: the next
start puts the branch on the best commit the records name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..fsio import fmt_metric
from ..proposers.base import Proposal
from ..proposers.oom import raised_batch
from . import integrity
from .context import Ctx, Slot, now
from .decision import decide
from .events import Decision, Phase, ProgressReport, RunFinished, RunStarted
from .executors.base import Handle, RunSpec
from .gate import Ready
from .measure import evaluate_run
from .notes import render_notes
from .records import RunRecord
from .runner import RunOutcome


@dataclass
class Job:
    """What a slot runs next: a proposal, the baseline (a repeat: `repeat` > 1), or a re-measurement."""

    kind: str  # proposal | baseline | remeasure
    ready: Ready | None = None
    repeat: int = 0
    remeasure_of: int | None = None


def _commit_sync(ctx: Ctx, n: int, p: Proposal, changed: dict[str, str]) -> tuple[str, str]:
    ctx.state.update(pending={"iteration": n, "description": p.description, "at": now()})
    msg = ctx.ledger.clear_stale_index_lock()
    if msg:
        ctx.notice(msg, "warning")
    for path, text in changed.items():
        (ctx.root / path).write_text(text, encoding="utf-8")
    body = p.description + (f"\n\nHypothesis: {p.hypothesis}" if p.hypothesis else "")
    sha = ctx.ledger.commit_files(sorted(changed), body)
    return sha, ctx.ledger.set_ref(n, sha)


async def prepare(ctx: Ctx, n: int, job: Job) -> RunRecord:
    """The record of experiment `n`, committed (a proposal) or pointing at the head (otherwise)."""
    rec = RunRecord(iteration=n, proposer=ctx.proposer.name)
    if job.ready is not None:
        p, changed, h = job.ready
        ctx.set_phase(Phase.COMMITTING, n, p.description)
        rec.parent = ctx.best_commit() or ""
        rec.commit, rec.ref = await ctx.thread(_commit_sync, ctx, n, p, changed)
        rec.lines_added, rec.lines_removed = p.lines_changed
        rec.update(description=p.description, hypothesis=p.hypothesis, idea=p.idea, mutation=p.mutation, diff_hash=h,
                   tokens=p.tokens, cost_usd=round(p.cost_usd, 6), repair_of=p.repair_of)
        if p.idea:
            await ctx.thread(ctx.mark_idea, p.idea, "running", f"#{n}")
        return rec
    rec.commit = await ctx.thread(ctx.ledger.head)
    rec.ref = await ctx.thread(ctx.ledger.set_ref, n, rec.commit)
    if job.kind == "remeasure":
        rec.update(description=f"re-measure after the override of #{job.remeasure_of}", remeasure_of=job.remeasure_of)
    elif job.repeat > 1:
        rec.update(description=f"baseline (run {job.repeat}/{ctx.cfg.metric.baseline_runs}, noise estimate)", is_baseline=True)
    else:
        rec.update(description="baseline", is_baseline=True)
    return rec


def withdraw(ctx: Ctx, rec: RunRecord) -> None:
    """(blocking) Take back a committed experiment that never ran (a stop came in between): the
    branch goes back to the best, its ref goes, and its idea is queued again."""
    target = ctx.best_commit()
    if target:
        ctx.ledger.reset_hard(target)
    if rec.ref:
        ctx.ledger.git("update-ref", "-d", rec.ref, check=False)
    ctx.state.update(pending=None)
    if rec.idea:
        ctx.mark_idea(rec.idea, "queued", "")


def _link_run_log(ctx: Ctx, log: Any) -> None:
    """`run.log` is the current run's log: a hard link to the per-run file (same bytes, no copy)."""
    target = ctx.paths.run_log
    tmp = ctx.root / ".run.log.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.link(log, tmp)
        tmp.replace(target)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            target.symlink_to(log.relative_to(ctx.root))
        except OSError:
            pass


def _start_sync(ctx: Ctx, spec: RunSpec, rec: RunRecord) -> Handle:
    integrity.check_before_run(ctx)
    handle = ctx.executor.start(spec)
    try:
        _link_run_log(ctx, spec.log_path)
        ctx.state.update(pending=None, inflight={**handle.to_state(), "iteration": rec.iteration, "record": rec.to_dict(),
                                                 "timeout_s": spec.timeout_s})
    except BaseException:
        ctx.executor.kill(handle, spec.grace_s)  # a run nobody could find again must not live on
        raise
    return handle


def announce(ctx: Ctx, rec: RunRecord, handle: Handle, timeout_s: float) -> None:
    ctx.set_phase(Phase.BASELINE if rec.is_baseline else Phase.RUNNING, rec.iteration, rec.description)
    ctx.bus.emit(RunStarted(rec.iteration, rec.commit, rec.description, str(handle.log_path), ctx.cfg.research.time_budget_s,
                            timeout_s, handle.started_at, handle.pid))


async def run(ctx: Ctx, slot: Slot, rec: RunRecord, on_started: Callable[[RunRecord], None] | None = None) -> RunRecord:
    """Run the prepared experiment in `slot` and record it."""
    spec = ctx.spec(slot, rec.iteration)
    slot.clear_kill(ctx.control)
    handle = await ctx.start_in_slot(slot, spec, lambda: _start_sync(ctx, spec, rec))
    announce(ctx, rec, handle, spec.timeout_s)
    if on_started is not None:
        on_started(rec)
    handle, outcome = await ctx.run_in_slot(slot, spec, handle)
    await finish(ctx, slot, rec, handle, outcome)
    return rec


async def finish(ctx: Ctx, slot: Slot, rec: RunRecord, handle: Handle, outcome: RunOutcome) -> None:
    m = ctx.cfg.metric
    n = rec.iteration
    ctx.bus.emit(RunFinished(n, outcome.exit_code, outcome.timed_out, outcome.killed, outcome.duration_s))
    ctx.set_phase(Phase.MEASURING, n)
    meas = await ctx.thread(evaluate_run, handle.log_path, outcome, m.name, m.pattern, m.secondary, slot.kill_reason)
    rec.update(**meas)
    try:
        log = str(handle.log_path.relative_to(ctx.root))
    except ValueError:
        log = str(handle.log_path)
    rec.update(started_at=handle.started_at, ended_at=now(), log=log, platform=ctx.platform.get("summary", ""), metric_name=m.name)
    for check in (lambda: integrity.check_git_after_run(ctx, rec.commit), lambda: integrity.check_evaluator_after_run(ctx)):
        why = await ctx.thread(check)
        if why:
            rec.update(crash_reason=why, crash_kind="tampering", metric=None)
            ctx.notice(why, "error")
    if rec.crash_kind == "oom":
        rec.no_retry = await ctx.thread(oom_no_retry, ctx, rec)
    rec.status = await decide(ctx, slot, rec)
    await record(ctx, rec)


def oom_no_retry(ctx: Ctx, rec: RunRecord) -> str:
    """(blocking) Why an experiment that ran out of memory is not retried at half the device batch
    ('' = it is): the setting, a retry that did not fit either, or an idea that raised the batch."""
    if not ctx.cfg.research.oom_retry:
        return "oom_retry is off"
    if not rec.is_experiment or not rec.description:
        return "not an experiment"
    if rec.repair_of is not None:
        return f"already a retry of #{rec.repair_of}"
    if not (rec.commit and rec.parent):
        return ""
    files = [p for p in ctx.cfg.research.files_in_scope if p.endswith(".py")]

    def at(commit: str) -> dict[str, str]:
        out = {}
        for p in files:
            data = ctx.ledger.show_file(commit, p)
            if data is not None:
                out[p] = data.decode("utf-8", errors="replace")
        return out

    raised = raised_batch(at(rec.parent), at(rec.commit))
    return f"the experiment raised the batch ({raised}): a smaller batch would undo the idea" if raised else ""


async def record(ctx: Ctx, rec: RunRecord) -> None:
    """Append the row (fsynced), then move the branch, update notes and tell the subscribers."""
    n, status = rec.iteration, rec.status
    await ctx.thread(ctx.results.append, rec.to_dict())
    ctx.history.add(rec)
    if rec.is_experiment:
        ctx.experiments_this_session += 1
    if rec.is_remeasure and status == "crash":
        ctx.notice(f"the re-measurement after the override of #{rec.remeasure_of} crashed; the branch goes back to the best measured commit",
                   "error")
    await ctx.thread(_after_record_sync, ctx, rec)
    if rec.idea:
        outcome = f"#{n} {status}" + (f" ({fmt_metric(rec.metric)})" if rec.metric is not None else "")
        await ctx.thread(ctx.mark_idea, rec.idea, "tried", outcome)
    ctx.set_phase({"keep": Phase.KEPT, "discard": Phase.DISCARDED, "crash": Phase.CRASHED}[status], n, rec.description)
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
        # the run may have changed tracked files: back to exactly the kept commit
        if ctx.ledger.tracked_changes():
            ctx.ledger.reset_hard(rec.commit)
    ctx.state.update(inflight=None, pending=None)
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
