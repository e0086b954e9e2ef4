"""The user's keep/discard of a recorded experiment (`k` / `d`).

`k` re-applies a discarded change onto the branch, `d` reverts a kept one; either way the branch
now holds code nobody measured, so the next thing the loop runs is a re-measurement of it, and
that measurement becomes the best (see `records.History`). Applied between runs, never during.
"""

from __future__ import annotations

from dataclasses import replace

from .context import Ctx, now
from .events import OverrideApplied
from .ledger import GitError


async def apply_pending(ctx: Ctx) -> None:
    while ctx.control.overrides:
        n, status = ctx.control.overrides.pop(0)
        try:
            await ctx.thread(_apply_sync, ctx, n, status)
        except (GitError, ValueError) as e:
            ctx.notice(f"cannot mark #{n} {status}: {e}", "error")


def _apply_sync(ctx: Ctx, n: int, status: str) -> None:
    rec = ctx.history.get(n)
    if rec is None:
        raise ValueError("no such experiment")
    if rec.status == status:
        raise ValueError(f"it is already {status}")
    if not rec.is_experiment:
        raise ValueError("the baseline and re-measurements cannot be overridden")
    led = ctx.ledger
    if status == "keep":
        if rec.status == "crash" or rec.metric is None:
            raise ValueError("a crashed experiment has no metric to keep")
        commit = led.rev(rec.ref) or led.rev(rec.commit)
        if not commit:
            raise ValueError("its commit is gone")
        new_head = led.cherry_pick_onto_head(commit, f"keep #{n} (user override): {rec.description}")
    else:
        if rec.status != "keep":
            raise ValueError("only a kept experiment can be discarded")
        new_head = led.revert_on_head(rec.commit, f"discard #{n} (user override): {rec.description}")
    ev = {"kind": "override", "iteration": n, "status": status, "previous": rec.status, "new_head": new_head, "at": now(),
          "before_iteration": ctx.history.next_iteration}  # its re-measurement is a later row
    ctx.results.append_event(ev)
    ctx.history.add_event(ev)
    rec.status, rec.override = status, ev
    ctx.results.rewrite_tsv([r.to_dict() for r in ctx.history])
    ctx.bus.emit(OverrideApplied(n, status, new_head, replace(rec)))
    ctx.notice(f"#{n} marked {status} by you; the branch is now {new_head[:7]}; it is re-measured before the next experiment")
