"""After a restart: the experiment that was in flight when the app went away is re-attached if
its run still lives, scored from its log if it ended, or recorded as a crash if it never
started — never silently lost, never left running as an orphan."""

from __future__ import annotations

from .context import Ctx, Slot, now
from .records import RunRecord
from .trial import announce, finish


async def recover(ctx: Ctx, slot: Slot) -> None:
    st = await ctx.thread(ctx.state.read)
    pending, inflight = st.get("pending"), st.get("inflight")
    done = {r.iteration for r in ctx.history}
    if inflight and inflight.get("iteration") not in done:
        await _inflight(ctx, slot, inflight)
    elif pending and pending.get("iteration") not in done:
        await _pending(ctx, pending)
    elif pending or inflight:
        await ctx.thread(ctx.state.update, pending=None, inflight=None)


async def _inflight(ctx: Ctx, slot: Slot, saved: dict) -> None:
    n = int(saved["iteration"])
    rec = RunRecord.from_dict(saved.get("record") or {"iteration": n, "description": "(interrupted)"})
    rec.iteration = n
    timeout = float(saved.get("timeout_s", ctx.cfg.research.effective_timeout))
    handle = await ctx.thread(ctx.executor.reattach, saved)
    slot.clear_kill(ctx.control)  # a "stop now" during setup kills the re-attached run
    if handle is not None:
        ctx.notice(f"re-attached to experiment #{n} (pid {handle.pid}), still running from before the restart")
        announce(ctx, rec, handle, timeout)
        spec = ctx.spec(slot, n)
        spec.timeout_s = timeout
        handle, outcome = await ctx.run_in_slot(slot, spec, handle)
    else:
        handle, outcome = await ctx.thread(ctx.executor.ended_while_away, saved, ctx.cfg.research.kill_grace_s)
        ctx.notice(f"experiment #{n} ended while the app was away; scored from its log")
    await finish(ctx, slot, rec, handle, outcome)


async def _pending(ctx: Ctx, pending: dict) -> None:
    n = int(pending["iteration"])
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
    await ctx.thread(ctx.state.update, pending=None)
