"""The keep decision for one measured experiment: the noise-aware policy (`policy.decide`), a
confirmation run when the policy asks for one, and the guard command before a keep."""

from __future__ import annotations

from typing import Any

from .context import Ctx, Slot
from .events import Phase
from .measure import delta, evaluate_run
from .policy import decide as policy_decide
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
    m = ctx.cfg.metric
    spread = ctx.history.noise()
    ref, n_ref = ctx.history.reference()
    if basis is not None and basis.reference is not None:
        ref, n_ref = basis.reference, basis.n_reference
    lines = (rec.lines_added, rec.lines_removed)
    assert rec.metric is not None and ref is not None
    v = policy_decide(rec.metric, ref, n_ref, m.direction, m.keep_policy, m.min_delta, spread, m.noise_k, lines)
    if v.status == "confirm":
        if _interrupted(ctx, slot, rec, "confirmation"):
            return "crash"
        ctx.set_phase(Phase.RUNNING, rec.iteration, f"confirming #{rec.iteration}: {v.verdict}", slot=slot)
        second = await _confirm(ctx, slot, rec.iteration)
        if _interrupted(ctx, slot, rec, "confirmation"):
            return "crash"
        if second is None:
            v.status, v.verdict = "discard", "the confirmation run failed"
        else:
            rec.runs = [rec.metric, second]
            rec.metric = (rec.metric + second) / 2
            v = policy_decide(rec.metric, ref, n_ref, m.direction, m.keep_policy, m.min_delta, spread, m.noise_k, lines, confirmed_runs=2)
            rec.delta_vs_best = delta(rec.metric, rec.best_before)
    rec.verdict, rec.margin, rec.noise, rec.policy = v.verdict, v.margin, spread, m.keep_policy
    rec.confidence = None if v.confidence is None else round(v.confidence, 3)
    if v.flag:
        rec.flag = v.flag
        ctx.notice(f"#{rec.iteration} {rec.description}: {v.flag}", "warning")
    return v.status


async def _confirm(ctx: Ctx, slot: Slot, n: int) -> float | None:
    """Run the same commit once more (the candidate is still checked out)."""
    m = ctx.cfg.metric
    spec = ctx.spec(slot, n, "confirm")
    _, out = await ctx.run_in_slot(slot, spec)
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
