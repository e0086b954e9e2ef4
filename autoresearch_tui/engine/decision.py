"""The keep decision for one measured experiment: the noise-aware policy (`policy.decide`), a
confirmation run when the policy asks for one, and the guard command before a keep."""

from __future__ import annotations

import asyncio
from typing import Any

from .context import Ctx, Slot
from .events import Phase
from .measure import delta, evaluate_run
from .policy import judge as policy_judge
from .records import RunRecord


async def decide(ctx: Ctx, slot: Slot, rec: RunRecord, basis: Any = None) -> str:
    """keep | discard | crash; fills the record's decision fields. `basis` (trial.Basis): the
    best when the experiment started — what it must beat, also when the best moved meanwhile
    (several slots); None = the best now."""
    best_val = deltas(ctx, rec, basis)
    if rec.crash_reason:
        return "crash"
    if not rec.is_experiment or best_val is None:
        return "keep"  # the baseline, a re-measurement after an override, or nothing to beat yet
    status = await _policy(ctx, slot, rec, basis)
    if status == "keep" and ctx.cfg.research.guard_command:
        if _interrupted(ctx, slot, rec, "guard"):
            return "crash"
        ok, why = await _guard(ctx, slot, rec.iteration)
        if _interrupted(ctx, slot, rec, "guard"):
            return "crash"
        rec.guard = "pass" if ok else why
        if not ok:
            status = "discard"
            rec.discard_reason = f"guard failed: {why}"
    return status


def deltas(ctx: Ctx, rec: RunRecord, basis: Any = None) -> float | None:
    """Fill the record's distances to the best (when it started) and the baseline; returns that best."""
    h = ctx.history
    best, base = h.best(), h.baseline()
    best_val = basis.best if basis is not None and basis.best is not None else (best.metric if best else None)
    rec.best_before = best_val
    rec.delta_vs_best = delta(rec.metric, best_val)
    rec.delta_vs_baseline = delta(rec.metric, base.metric if base else None)
    return best_val


def _interrupted(ctx: Ctx, slot: Slot, rec: RunRecord, what: str) -> bool:
    """A kill (the user's, or a stop) before or during a confirmation or guard run leaves the
    experiment undecided: recorded as an interrupted crash, never as a verdict it did not earn."""
    if not slot.kill.is_set():
        return False
    rec.crash_reason = f"not decided: {slot.kill_reason or 'killed'} before the {what} run ended"
    rec.crash_kind = "interrupted"
    return True


async def _policy(ctx: Ctx, slot: Slot, rec: RunRecord, basis: Any = None) -> str:
    m, h, n = ctx.cfg.metric, ctx.history, rec.iteration
    best = h.best()
    assert rec.metric is not None and best is not None
    # what it must beat: the best it started from (several slots: the best may have moved since)
    best_commit = basis.commit if basis is not None and basis.commit and h.measurements(basis.commit) else best.commit
    interrupted = False

    async def measure(commit: str = "") -> float | None:
        """One more run: of the candidate, or (`commit`) of the best; None when it fails or a kill came."""
        nonlocal interrupted
        if _interrupted(ctx, slot, rec, "confirmation"):
            interrupted = True
            return None
        ctx.set_phase(Phase.RUNNING, n, f"re-measuring the best for #{n}" if commit else f"confirming #{n}: run it again", slot=slot)
        value = await _confirm(ctx, slot, n, commit)
        interrupted = _interrupted(ctx, slot, rec, "confirmation")
        return None if interrupted else value

    v = await policy_judge(rec.metric, h.measurements(best_commit), m.direction, m.keep_policy, m.min_delta, m.noise_k,
                           h.noise_estimate, again=measure, best_again=lambda: measure(best_commit),
                           lines=(rec.lines_added, rec.lines_removed))
    if interrupted:
        return "crash"
    if len(v.runs) > 1:
        rec.runs = list(v.runs)
        rec.metric = sum(v.runs) / len(v.runs)
        rec.delta_vs_best = delta(rec.metric, rec.best_before)
    if v.best_runs:
        rec.best_runs, rec.best_commit = list(v.best_runs), best_commit
    rec.verdict, rec.margin, rec.noise, rec.policy = v.verdict, v.margin, v.spread, m.keep_policy
    rec.confidence = None if v.confidence is None else round(v.confidence, 3)
    if v.flag:
        rec.flag = v.flag
        ctx.notice(f"#{n} {rec.description}: {v.flag}", "warning")
    return v.status


async def _confirm(ctx: Ctx, slot: Slot, n: int, best: str = "") -> float | None:
    """Run the candidate (its commit is checked out in the slot) once more, or — given `best` —
    the best commit's code: the slot's tracked files are set to that commit for the run and put
    back after it (HEAD never moves). Each run has its own log: `<n>.confirm<k>` / `<n>.best<k>`."""
    m = ctx.cfg.metric
    kind, k = ("best", 1) if best else ("confirm", 2)
    while ctx.paths.log(n, f"{kind}{k}").exists():
        k += 1
    spec = ctx.spec(slot, n, f"{kind}{k}")

    def put(commit: str) -> None:
        ctx.ledger.git("-C", str(slot.workdir), "restore", f"--source={commit}", "--worktree", "--", ".")

    await ctx.thread(put, best or "HEAD")  # (also undoes a best's files left by an app that died mid-run)
    try:
        _, out = await ctx.run_in_slot(slot, spec)
    finally:
        if best:
            await asyncio.shield(ctx.thread(put, "HEAD"))
    meas = await ctx.thread(evaluate_run, spec.log_path, out, m.name, m.pattern, [], "")
    return None if meas.get("crash_reason") else meas.get("metric")


async def _guard(ctx: Ctx, slot: Slot, n: int) -> tuple[bool, str]:
    spec = ctx.spec(slot, n, "guard", command=ctx.cfg.research.guard_command)
    _, out = await ctx.run_in_slot(slot, spec)
    if out.timed_out:
        return False, "the guard command timed out"
    if out.killed:
        return False, "the guard command was killed"
    if out.exit_code != 0:
        return False, f"the guard command exited with {out.exit_code}"
    return True, ""
