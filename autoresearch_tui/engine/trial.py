"""One experiment, from commit to record: commit (and ref) → run in a slot → measure → tamper
checks → decision → record (fsynced) → branch back on the best → notes and events.

The record is written before the branch moves, so a crash in between loses nothing: the next
start puts the branch on the best commit the records name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..fsio import clean_text, fmt_metric
from ..proposers.base import Proposal
from ..proposers.oom import raised_batch
from . import curves, integrity, worktrees
from .context import Ctx, Slot, now
from .decision import decide, deltas
from .curvewatch import follow_run
from .events import Decision, Phase, ProgressReport, RunFinished, RunStarted
from .executors.base import Handle, RunSpec
from .gate import Ready
from .ledger import GitError
from .measure import evaluate_run
from .notes import render_notes
from .records import RunRecord
from .runner import RunOutcome


@dataclass
class Job:
    """What a slot runs next: a proposal, the baseline (a repeat: `repeat` > 1), a re-measurement
    after an override, or an experiment re-applied onto a best that moved while it ran."""

    kind: str  # proposal | baseline | remeasure | reapply
    ready: Ready | None = None
    repeat: int = 0
    remeasure_of: int | None = None
    reapply: RunRecord | None = None  # the record the re-applied experiment starts from (commit made)
    basis: Basis | None = None  # the best when it started (set by prepare)
    sweep: Sweep | None = None  # one value of a sweep: decided with the others


@dataclass
class Sweep:
    """`sweep NAME v1 v2 …`: one experiment per value over free slots, decided as one step when
    the last one is measured — the best value is kept only if it wins, the others are discarded."""

    idea: str
    size: int
    measured: list[tuple[RunRecord, Basis | None]] = field(default_factory=list)
    decided: bool = False

    def drop(self) -> None:
        """A value that will not run (a stop came before it started)."""
        self.size -= 1

    @property
    def complete(self) -> bool:
        return len(self.measured) >= self.size


@dataclass
class Basis:
    """What an experiment must beat: the best (and its reference) when it started."""

    commit: str
    best: float | None
    reference: float | None
    n_reference: int


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
    return await _conclude(ctx, slot, [], rec)


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
        return await _conclude(ctx, slot, others[:-1], others[-1])
    return await _conclude(ctx, slot, others, win)


async def _conclude(ctx: Ctx, slot: Slot, first: list[RunRecord], rec: RunRecord) -> Job | None:
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
