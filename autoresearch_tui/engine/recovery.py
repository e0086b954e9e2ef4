"""After a restart: every experiment that was in flight when the app went away (one per slot) is
re-attached if its run still lives, scored from its log if it ended, or recorded as a crash if
it never started — never silently lost, never left running as an orphan, never numbered twice.
Runs are followed in the worktree they run in, whatever the slots are now."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .context import Ctx, Slot, now
from .ledger import Ledger
from .records import RunRecord
from .curvewatch import follow_run
from .trial import announce, finish


async def recover(ctx: Ctx) -> None:
    runs = await ctx.thread(ctx.state.entries, "inflight_runs", "inflight")
    pendings = await ctx.thread(ctx.state.entries, "pending_commits", "pending")
    done = {r.iteration for r in ctx.history}
    runs = [r for r in runs if int(r.get("iteration", -1)) not in done]
    started = {int(r["iteration"]) for r in runs}
    for p in pendings:
        n = int(p.get("iteration", -1))
        if n not in done and n not in started:
            await _pending(ctx, p)
    slots: list[Slot] = []
    for saved in runs:
        slots.append(_slot_for(ctx, saved, slots))
    temp = [s for s in slots if s not in ctx.slots]
    ctx.slots.extend(temp)  # a stop (and the UI) reaches them like any slot
    try:
        await asyncio.gather(*(_inflight(ctx, slot, saved) for slot, saved in zip(slots, runs, strict=True)))
    finally:
        for s in temp:
            ctx.slots.remove(s)
    await ctx.thread(ctx.state.update, pending=None, inflight=None, inflight_runs=None, pending_commits=None)


def _slot_for(ctx: Ctx, saved: dict, taken: list[Slot]) -> Slot:
    """The slot whose working directory the saved run runs in (a stand-in if the slots changed)."""
    workdir = Path(saved.get("workdir") or ctx.root)
    for s in ctx.slots:
        if s.workdir == workdir and s not in taken:
            return s
    index = int(saved.get("slot", 0))
    own = workdir != ctx.root and (workdir / ".git").exists()
    return Slot(index, workdir if own or workdir == ctx.root else ctx.root, ledger=Ledger(workdir, ctx.cfg.tag) if own else None)


async def _inflight(ctx: Ctx, slot: Slot, saved: dict) -> None:
    n = int(saved["iteration"])
    rec = RunRecord.from_dict(saved.get("record") or {"iteration": n, "description": "(interrupted)"})
    rec.iteration = n
    timeout = float(saved.get("timeout_s", ctx.cfg.research.effective_timeout))
    handle = await ctx.thread(ctx.executor.reattach, saved)
    slot.clear_kill(ctx.control)  # a "stop now" during setup kills the re-attached run
    if handle is not None:
        ctx.notice(f"re-attached to experiment #{n} (pid {handle.pid}), still running from before the restart")
        announce(ctx, slot, rec, handle, timeout)
        spec = ctx.spec(slot, n)
        spec.timeout_s = timeout
        handle, outcome = await follow_run(ctx, slot, spec, rec, handle)
    else:
        handle, outcome = await ctx.thread(ctx.executor.ended_while_away, saved, ctx.cfg.research.kill_grace_s)
        ctx.notice(f"experiment #{n} ended while the app was away; scored from its log")
    ctx.in_flight[n] = rec
    follow = await finish(ctx, slot, rec, handle, outcome)
    if follow is not None:
        ctx.follow_ups.append(follow)


async def _pending(ctx: Ctx, pending: dict) -> None:
    n = int(pending["iteration"])
    saved = pending.get("record")
    if isinstance(saved, dict) and saved.get("commit"):
        # a baseline, re-measurement or re-application: its commit was known before its run
        rec = RunRecord.from_dict(saved)
        rec.update(iteration=n, status="crash", crash_kind="interrupted", ended_at=now(),
                   crash_reason="the app stopped before this run started")
        sha = rec.commit if len(rec.commit) == 40 else ""
    else:
        head = await ctx.thread(ctx.ledger.head)
        sha = head if head != ctx.best_commit() else ""
        rec = RunRecord(
            iteration=n, description=pending.get("description", "(interrupted)"), commit=sha or "0000000", status="crash",
            crash_reason="the app stopped after committing this experiment and before its run started",
            crash_kind="interrupted", proposer=ctx.proposer.name, ended_at=now(),
        )
    if sha:
        rec.ref = await ctx.thread(ctx.ledger.set_ref, n, sha)
    await ctx.thread(ctx.results.append, rec.to_dict())
    ctx.history.add(rec)
    ctx.notice(f"experiment #{n} was interrupted before its run: recorded as crash", "warning")
    await ctx.thread(ctx.state.set_item, "pending_commits", n, None)
