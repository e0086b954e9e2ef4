"""One experiment, from commit to record: commit (and ref) → run in a slot → measure → tamper
checks → decision → record (fsynced) → branch back on the best → notes and events.

The record is written before the branch moves, so a crash in between loses nothing: the next
start puts the branch on the best commit the records name.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ..fsio import clean_text
from ..proposers.base import Proposal
from ..proposers.oom import raised_batch
from . import curves, integrity, worktrees
from .context import Ctx, Slot, now
from .decision import decide, deltas
from .curvewatch import follow_run
from .events import Phase, RunFinished, RunStarted
from .executors.base import Handle, RunSpec
from .jobs import Basis, Job
from .measure import evaluate_run
from .moving import conclude, finish_sweep
from .records import RunRecord
from .runner import RunOutcome


def _files_base(ctx: Ctx, slot: Slot, commit: str) -> None:
    """(blocking) A slot with its own worktree: put it exactly on `commit` before anything is written there."""
    if slot.ledger is not None:
        worktrees.checkout(slot.ledger, commit, ctx.links, ctx.root)


def _commit_sync(ctx: Ctx, slot: Slot, n: int, p: Proposal, changed: dict[str, str], base: str) -> tuple[str, str]:
    ctx.state.set_item("pending_commits", n, {"iteration": n, "description": p.description, "at": now(), "slot": slot.index})
    led = slot.ledger or ctx.ledger
    if slot.ledger is None:
        msg = ctx.ledger.clear_stale_index_lock()
        if msg:
            ctx.notice(msg, "warning")
    else:
        _files_base(ctx, slot, base)
    for path, text in changed.items():
        (slot.workdir / path).write_text(text, encoding="utf-8")
    body = p.description + (f"\n\nHypothesis: {p.hypothesis}" if p.hypothesis else "")
    sha = led.commit_files(sorted(changed), body)
    return sha, ctx.ledger.set_ref(n, sha)


def _basis(ctx: Ctx) -> Basis:
    best = ctx.history.best()
    ref, n_ref = ctx.history.reference()
    return Basis(ctx.best_commit() or "", best.metric if best else None, ref, n_ref)


async def prepare(ctx: Ctx, slot: Slot, job: Job) -> RunRecord:
    """The record of the next experiment, its number given now: committed (a proposal, a
    re-application) or pointing at the best commit (the baseline, a re-measurement)."""
    rec = RunRecord(iteration=0, proposer=ctx.proposer.name, slot=slot.index)
    n = ctx.allocate(rec)
    job.basis = _basis(ctx)
    if job.ready is not None:
        p, changed, h = job.ready
        ctx.set_phase(Phase.COMMITTING, n, p.description, slot=slot)
        rec.update(proposer=p.proposer or rec.proposer, fallback=p.fallback, attempts=p.attempts, transcripts=list(p.transcripts))
        rec.parent = job.basis.commit
        rec.commit, rec.ref = await ctx.thread(_commit_sync, ctx, slot, n, p, changed, rec.parent)
        rec.lines_added, rec.lines_removed = p.lines_changed
        rec.update(description=clean_text(p.description), hypothesis=clean_text(p.hypothesis), idea=p.idea, mutation=p.mutation, diff_hash=h,
                   tokens=p.tokens, cost_usd=round(p.cost_usd, 6), repair_of=p.repair_of)
        if p.idea:
            await ctx.thread(ctx.mark_idea, p.idea, "running", f"#{n}")
        return rec
    if job.kind == "reapply" and job.reapply is not None:
        first = job.reapply
        rec.parent = job.basis.commit
        rec.commit = first.commit
        rec.update(description=first.description, hypothesis=first.hypothesis, idea=first.idea, mutation=first.mutation,
                   lines_added=first.lines_added, lines_removed=first.lines_removed, reapply_of=first.reapply_of)
    else:
        rec.commit = ctx.best_commit() or await ctx.thread(ctx.ledger.head)
        if job.kind == "remeasure":
            rec.update(description=f"re-measure after the override of #{job.remeasure_of}", remeasure_of=job.remeasure_of)
        elif job.repeat > 1:
            rec.update(description=f"baseline (run {job.repeat}/{ctx.cfg.metric.baseline_runs}, noise estimate)", is_baseline=True)
        else:
            rec.update(description="baseline", is_baseline=True)
    await ctx.thread(_ref_sync, ctx, slot, rec)
    return rec


def _ref_sync(ctx: Ctx, slot: Slot, rec: RunRecord) -> None:
    """(blocking) Its number is taken from here on (an experiment ref): saved as pending first, so
    that an app that dies before the run starts leaves a crash row, never a hole in the numbers."""
    ctx.state.set_item("pending_commits", rec.iteration, {"iteration": rec.iteration, "description": rec.description,
                                                          "at": now(), "slot": slot.index, "record": rec.to_dict()})
    _files_base(ctx, slot, rec.commit)
    rec.ref = ctx.ledger.set_ref(rec.iteration, rec.commit)


def withdraw(ctx: Ctx, slot: Slot, rec: RunRecord) -> None:
    """(blocking) Take back a committed experiment that never ran (a stop came in between): the
    branch goes back to the best, its ref goes, and its idea is queued again."""
    target = ctx.best_commit()
    if target and slot.ledger is None:
        ctx.ledger.reset_hard(target)
    if rec.ref:
        ctx.ledger.git("update-ref", "-d", rec.ref, check=False)
    ctx.state.set_item("pending_commits", rec.iteration, None)
    ctx.in_flight.pop(rec.iteration, None)
    if rec.idea and rec.reapply_of is None:
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


def _start_sync(ctx: Ctx, slot: Slot, spec: RunSpec, rec: RunRecord) -> Handle:
    integrity.check_before_run(ctx, slot)
    handle = ctx.executor.start(spec)
    try:
        _link_run_log(ctx, spec.log_path)
        saved = {**handle.to_state(), "iteration": rec.iteration, "record": rec.to_dict(), "timeout_s": spec.timeout_s,
                 "slot": slot.index, "workdir": str(slot.workdir)}
        ctx.state.set_item("inflight_runs", rec.iteration, saved, pending_commits=(rec.iteration, None))
    except BaseException:
        ctx.executor.kill(handle, spec.grace_s)  # a run nobody could find again must not live on
        raise
    return handle


def announce(ctx: Ctx, slot: Slot, rec: RunRecord, handle: Handle, timeout_s: float) -> None:
    slot.started_at, slot.log_path = handle.started_at, str(handle.log_path)
    ctx.in_flight.setdefault(rec.iteration, rec)
    ctx.set_phase(Phase.BASELINE if rec.is_baseline else Phase.RUNNING, rec.iteration, rec.description, slot=slot)
    ctx.bus.emit(RunStarted(rec.iteration, rec.commit, rec.description, str(handle.log_path), ctx.cfg.research.time_budget_s,
                            timeout_s, handle.started_at, handle.pid, slot=slot.index))


async def run(ctx: Ctx, slot: Slot, rec: RunRecord, job: Job | None = None,
              on_started: Callable[[RunRecord], None] | None = None) -> Job | None:
    """Run the prepared experiment in `slot` and record it. Returns what the slot runs next at
    once: the experiment re-applied onto a best that moved meanwhile, or None."""
    spec = ctx.spec(slot, rec.iteration)
    slot.clear_kill(ctx.control)
    handle = await ctx.start_in_slot(slot, spec, lambda: _start_sync(ctx, slot, spec, rec))
    announce(ctx, slot, rec, handle, spec.timeout_s)
    if on_started is not None:
        on_started(rec)
    handle, outcome = await follow_run(ctx, slot, spec, rec, handle)
    if job is not None and job.sweep is not None:
        await measure(ctx, slot, rec, handle, outcome)
        job.sweep.measured.append((rec, job.basis))
        return await finish_sweep(ctx, slot, job.sweep) if job.sweep.complete else None
    return await finish(ctx, slot, rec, handle, outcome, job.basis if job else None)


async def measure(ctx: Ctx, slot: Slot, rec: RunRecord, handle: Handle, outcome: RunOutcome) -> None:
    """Read the metric from the log and check that the run touched nothing it must not."""
    m = ctx.cfg.metric
    n = rec.iteration
    slot.started_at = 0.0
    ctx.bus.emit(RunFinished(n, outcome.exit_code, outcome.timed_out, outcome.killed, outcome.duration_s, slot=slot.index))
    ctx.set_phase(Phase.MEASURING, n, rec.description, slot=slot)
    meas = await ctx.thread(evaluate_run, handle.log_path, outcome, m.name, m.pattern, m.secondary, slot.kill_reason)
    rec.update(**meas)
    try:
        log = str(handle.log_path.relative_to(ctx.root))
    except ValueError:
        log = str(handle.log_path)
    rec.update(started_at=handle.started_at, ended_at=now(), log=log, platform=ctx.platform.get("summary", ""), metric_name=m.name)
    if slot.kill_reason.startswith(curves.EARLY) and outcome.killed:
        # stopped because its curve was clearly worse than the best's: a discard, never a crash
        rec.update(crash_reason="", crash_kind="", error_tail="", metric=None, early_stop=slot.kill_reason,
                   discard_reason=slot.kill_reason)
    async with ctx.record_lock:  # the branch moves only under this lock: no other slot moves it while we look
        for why in await ctx.thread(integrity.check_after_run, ctx, slot, rec.commit):
            rec.update(crash_reason=why if rec.crash_kind != "tampering" else f"{rec.crash_reason}; {why}",
                       crash_kind="tampering", metric=None)
            ctx.notice(why, "error")
    if rec.crash_kind == "oom":
        rec.no_retry = await ctx.thread(oom_no_retry, ctx, rec)


async def finish(ctx: Ctx, slot: Slot, rec: RunRecord, handle: Handle, outcome: RunOutcome, basis: Basis | None = None) -> Job | None:
    await measure(ctx, slot, rec, handle, outcome)
    if rec.early_stop:
        deltas(ctx, rec, basis)
        rec.status = "discard"
    else:
        rec.status = await decide(ctx, slot, rec, basis)
    return await conclude(ctx, slot, [], rec)


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


