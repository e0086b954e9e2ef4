"""Proposals asked for ahead: the next proposal is requested while a run trains, one per slot,
so that a healthy model never keeps the GPU waiting. A prepared proposal is used only if it is
still good when its slot is free (no crash to repair first, no new idea queued first, still
applying onto the best); otherwise it is dropped (its transcript says why) and the model is asked
again. A model that rests after failed rounds is asked when its rest ends (`Request.starts_at`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Awaitable

from ..proposers.base import Proposal, ProposalContext, ProposalError
from ..proposers.edits import Rejected, apply_edits
from .context import now

if TYPE_CHECKING:
    from .gate import Gate


class Request:
    """A model request: a prepared one (with the best it was based on) or one a slot waits on."""

    def __init__(self, base: str = "", starts_at: float = 0.0):
        self.task: asyncio.Task | None = None
        self.base = base
        self.starts_at = starts_at  # it waits until then (the model's backoff) before it asks
        self.troubled = False  # an attempt failed and is retried

    def busy(self) -> bool:
        """Not worth waiting for: still waiting out a backoff, or being retried."""
        t = self.task
        return t is not None and not t.done() and (now() < self.starts_at or self.troubled)


class Prefetch:
    def __init__(self, gate: Gate):
        self.gate = gate
        self.prepared: list[Request] = []

    def call(self, pc: ProposalContext, req: Request) -> Awaitable[Proposal]:
        """The model's proposal for `pc`, asked at `req.starts_at`; a retried attempt marks `req`."""
        def troubled(text: str) -> None:
            req.troubled = True
            self.gate.health.report(text)

        pc.report = troubled

        async def call() -> Proposal:
            wait = req.starts_at - now()
            if wait > 0:
                await asyncio.sleep(wait)
            return await self.gate.ctx.proposer.propose(pc)

        return call()

    def start(self, base: str = "") -> None:
        """Ask for the next proposal now, for the slot that will be free next (`base`: the best the
        run now starting stands on)."""
        gate = self.gate
        ctx = gate.ctx
        if not (ctx.proposer.pipelined and ctx.cfg.proposer.pipeline) or ctx.control.stopping:
            return
        running = sum(1 for r in ctx.in_flight.values() if r.is_experiment)
        if ctx.max_iterations and ctx.experiments_this_session + running + len(self.prepared) >= ctx.max_iterations:
            return
        self.prepared = [r for r in self.prepared if r.task is not None and not r.task.cancelled()]
        if len(self.prepared) >= len(ctx.slots):
            return  # one prepared proposal per slot (a baseline repeat must not pay for another)
        # with a fallback, a rejected answer's repair round is prepared here, with the reasons
        rounds = gate.rounds
        pc = gate.context(list(rounds.feedback), list(rounds.rejected)) if ctx.fallback is not None else gate.context([], [])
        # the last record is the one a repair round is about, or the run now starting is that
        # repair: a prepared proposal is never a repair (next() asks for one when it is due)
        pc.crash = None
        req = Request(base or ctx.best_commit() or "", starts_at=gate.health.retry_at)  # a resting model waits
        req.task = asyncio.ensure_future(self.call(pc, req))
        req.task.add_done_callback(lambda t: self._ended(req))
        self.prepared.append(req)

    def _ended(self, req: Request) -> None:
        """A prepared request that failed says so now, not when its slot takes it (a run later)."""
        t = req.task
        if t is None or t.cancelled():
            return
        err = t.exception()  # (read here: the slot that takes it gets it again)
        if isinstance(err, ProposalError) and req in self.prepared:
            self.gate.health.report(f"the request prepared for the next experiment failed: {err}", "model_failed")

    async def take(self, pc: ProposalContext, n: int) -> Proposal | None:
        """The first prepared proposal, if it is still good for `pc` (None: none, dropped, a stop).
        Raises the ProposalError its request ended with."""
        if not self.prepared:
            return None
        req = self.prepared.pop(0)
        task, based_on = req.task, req.base
        assert task is not None
        requests = self.gate.requests
        requests.add(task)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()  # we were cancelled: the prepared request must not outlive us
            requests.discard(task)
        if task.cancelled():
            return None
        try:
            proposal = task.result()
        except ProposalError:
            raise  # the provider failed while we prepared: a failed proposal, not a second try
        except Exception:  # noqa: BLE001
            return None
        self.gate.account_cost(proposal)
        if proposal.repair_of is not None or pc.crash is not None:
            # prepared before the last experiment crashed: its repair round goes first
            return await self._dropped(proposal, n, "the last experiment crashed meanwhile: its repair goes first")
        first = pc.ideas[0] if pc.ideas else ""
        if first and pc.crash is None and proposal.idea != first:
            return await self._dropped(proposal, n, "the user queued a new idea meanwhile: it goes first")
        ctx = self.gate.ctx
        if based_on != ctx.best_commit():
            # the running experiment was kept: do the prepared edits still apply onto the new best?
            r = ctx.cfg.research
            try:
                apply_edits(pc.files, proposal.edits, ctx.root, r.files_in_scope, r.read_only)
            except Rejected:
                ctx.notice("the prepared proposal no longer applies onto the new best; asking again")
                return await self._dropped(proposal, n, "no longer applies onto the new best")
        return proposal

    async def _dropped(self, proposal: Proposal, n: int, why: str) -> None:
        """A prepared answer that is not used (the model is asked again): its transcript says why."""
        await self.gate.save(proposal, n, self.gate.rounds.attempts + 1, "dropped", why)
        return None

    def cancel(self) -> None:
        """A stop: every prepared request ends now."""
        for r in self.prepared:
            if r.task is not None and not r.task.done():
                r.task.cancel()
        self.prepared = []
