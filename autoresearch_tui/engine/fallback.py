"""Rounds with a fallback proposer: the GPU never waits on a failing model.

With `[proposer] fallback` (the offline proposer, for the llm one) a slot's proposal round makes
at most one model attempt, and only when the model is worth waiting for: not while it rests after
failed rounds (backoff), not while its prepared request is being retried. When the attempt fails
— the answer is rejected, the request errs or times out — or is not worth waiting for, the
slot's next experiment comes from the fallback at once, marked as such.

The model is not dropped: its round spans experiments. A rejected answer goes back to it with
the reason for the following experiment (the repair round, prepared while the fallback's run
trains); after `repair_rounds` + 1 rejected answers, or a failed request, the round has failed
(recorded, the model rests, `health` counts it and says what to fix after a few).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from ..proposers.base import ProposalContext, ProposalError
from ..proposers.edits import Rejected
from .context import now
from .events import ProposalReady

if TYPE_CHECKING:
    from .gate import Gate, Ready

TRIES = 9  # the fallback's proposals that may be rejected (e.g. taken by another slot) before it gives up


class FallbackRounds:
    def __init__(self, gate: Gate):
        self.gate = gate
        # the model's round so far: the reasons its answers were rejected, their descriptions,
        # how many there were, and their transcripts
        self.feedback: list[str] = []
        self.rejected: list[str] = []
        self.attempts = 0
        self.transcripts: list[str] = []
        self._noticed = False

    def reset(self) -> None:
        self.feedback, self.rejected, self.attempts, self.transcripts = [], [], 0, []

    async def next(self, n: int, pc: ProposalContext, rounds: int) -> Ready | None:
        """One model attempt, if the model is worth waiting for now; else — or when the attempt
        fails — the fallback's proposal, at once. (`pc` carries the round's feedback.)"""
        gate = self.gate
        ctx, health = gate.ctx, gate.health
        head = gate.prepared[0] if gate.prepared else None
        transcripts = list(self.transcripts)
        ready_now = head is not None and head.task is not None and head.task.done()
        if ctx.control.stopping:
            return None
        if health.in_backoff() and not ready_now:
            why = health.resting()
        elif head is not None and head.busy():
            why = f"the model's request is being retried ({health.activity[:160]})"
        else:
            attempt = self.attempts + 1
            try:
                proposal = await gate.ask_model(pc, n)
            except ProposalError as e:
                path = await gate.save(e, n, attempt, "failed", str(e))
                why = await self._round_failed(n, str(e), e.kind, path)
                transcripts += [path] if path else []
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a proposer bug must not kill the night
                why = await self._round_failed(n, f"{type(e).__name__}: {e}", "", "")
            else:
                if proposal is None:  # cancelled by a stop
                    return None
                ready, reason = await gate.judge(n, proposal, pc, attempt, transcripts)
                if ready is not None:
                    self.reset()
                    return ready
                if attempt >= rounds:
                    why = await self._round_failed(n, f"{attempt} proposals rejected; last: {reason}", "format", "")
                else:  # the model gets its answer back with the reason, for the next experiment
                    self.attempts, self.transcripts = attempt, list(transcripts)
                    self.feedback.append(reason)
                    self.rejected.append(proposal.description)
                    why = f"the model's answer was rejected ({reason[:160]}); it gets the reason back for the next one"
        if ctx.control.stopping:
            return None
        return await self._run_fallback(n, pc, why, transcripts)

    async def _round_failed(self, n: int, reason: str, kind: str, transcript: str) -> str:
        """The model's round failed: recorded, and the model rests (the fallback runs meanwhile)."""
        self.reset()
        await self.gate.record_failure(n, reason, kind, transcript)
        backoff = self.gate.health.failed(reason, kind)
        return f"the model failed ({reason[:200]}); asked again in {backoff:.0f} s"

    async def _run_fallback(self, n: int, pc: ProposalContext, why: str, transcripts: list[str]) -> Ready | None:
        gate = self.gate
        ctx, fb = gate.ctx, gate.ctx.fallback
        assert fb is not None
        fpc = dataclasses.replace(pc, feedback=[], rejected=[], report=None)
        for _ in range(TRIES):
            try:
                p = await gate.request(fb.propose(fpc))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - nothing from the fallback: wait for the model
                return await self._nothing(str(e))
            if p is None:  # a stop
                return None
            try:
                changed, h = await ctx.thread(gate.validate, p, pc.files)
                gate.reserve(p, h)
            except Rejected:
                fpc.rejected.append(p.description)
                continue
            p.proposer, p.fallback, p.transcripts = f"{fb.name} (fallback)", why[:400], list(transcripts)
            p.description = f"{p.description} (fallback)"
            gate.health.used_fallback()
            ctx.bus.emit(ProposalReady(n, p.description, p.hypothesis, p.idea, fallback=why))
            return p, changed, h
        return await self._nothing("its proposals were all rejected")

    async def _nothing(self, why: str) -> None:
        """The fallback has nothing either: wait until the model is asked again."""
        if not self._noticed:
            self._noticed = True
            self.gate.ctx.notice(f"the fallback proposer has nothing to run ({why}); waiting for the model", "warning")
        await self.gate.ctx.control.sleep(max(0.5, self.gate.health.retry_at - now()))
        return None
