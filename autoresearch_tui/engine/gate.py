"""The proposal gate: turns the proposer's answers into valid, new edits — or a failed round.

Builds the proposer's context, validates each answer (scope, read-only files, exact application,
parse, duplicates of any earlier experiment *or of one in flight*), feeds rejections back for
bounded repair rounds, prepares the next proposal while a run trains (prefetch), meters cost
(pausing at the cap) and backs off after failed rounds. Every model request is a task the session
can cancel: a stop never waits for a slow model.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable

from ..proposers.base import Proposal, ProposalContext, ProposalError
from ..proposers import sweep
from ..proposers.edits import Rejected, apply_edits, diff_hash, line_counts
from .context import Ctx, now
from .events import CostUpdated, Phase, ProposalFailed, ProposalReady, ProposalRejected
from .records import RunRecord

OOM_RETRY = "retry of #{n} at half the device batch"

Ready = tuple[Proposal, dict[str, str], str]  # the proposal, the changed files, the diff hash


def read_files(ctx: Ctx, paths: list[str]) -> dict[str, str]:
    """The text of these repository files (the ones that exist)."""
    out = {}
    for p in paths:
        try:
            out[p] = (ctx.root / p).read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    return out


class Gate:
    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.failed_in_row = 0
        self.backoff_base_s = 2.0  # after a failed round: 2, 4, 8 … s, at most 5 minutes
        self.end_reason = ""
        self.reserved: dict[str, Proposal] = {}  # diff hash -> a valid proposal not yet recorded (held, running)
        self._strategy_active = False
        self._prefetch: list[tuple[asyncio.Task, str]] = []  # prepared proposals, and the best each was based on
        self._requests: set[asyncio.Task] = set()
        self._round_lock = asyncio.Lock()  # a fast proposer answers one slot at a time: no two alike

    # ------------------------------------------------------------- context
    def context(self, feedback: list[str], rejected: list[str]) -> ProposalContext:
        ctx, r = self.ctx, self.ctx.cfg.research
        h = ctx.history
        program = read_files(ctx, [r.program]).get(r.program, "") if r.program else ""
        taken = {p.idea for p in self.reserved.values() if p.idea}  # another slot is on it
        # a sweep is the scheduler's (one experiment per value, over free slots)
        ideas = [i.text for i in ctx.notes.ideas() if i.status == "queued" and i.text not in taken and sweep.parse(i.text) is None]
        crash = self.to_repair()
        note = self.strategy_note()
        return ProposalContext(
            iteration=h.next_iteration, root=ctx.root, files=read_files(ctx, r.files_in_scope), read_only=read_files(ctx, r.read_only),
            goal=r.goal, metric=ctx.cfg.metric.name, direction=ctx.cfg.metric.direction, program=program,
            history=list(h.records), best=h.best(), baseline=h.baseline(), ideas=ideas, feedback=feedback, rejected=rejected,
            platform=ctx.platform, advice=list(ctx.platform.get("advice", [])), crash=crash, strategy_note=note,
            temperature=ctx.cfg.proposer.temperature + (0.2 if note else 0.0), in_flight=self.in_flight(),
        )

    def in_flight(self) -> list[RunRecord]:
        """Experiments running now or about to (other slots): they count as tried."""
        out = [RunRecord(iteration=r.iteration, description=r.description, mutation=r.mutation, diff_hash=r.diff_hash)
               for r in self.ctx.in_flight.values() if r.description]
        seen = {r.diff_hash for r in out}
        out += [RunRecord(iteration=0, description=p.description, mutation=p.mutation, diff_hash=h)
                for h, p in self.reserved.items() if h not in seen]
        return out

    def to_repair(self) -> RunRecord | None:
        """The last experiment, when it gets its one repair round: a trivial bug to fix, or out of
        memory (retried at half the device batch unless its record says why not)."""
        h = self.ctx.history
        last = h.records[-1] if h.records else None
        if not last or last.status != "crash" or last.repair_of is not None or not last.description or not last.is_experiment:
            return None
        if last.crash_kind == "trivial":
            return last
        if last.crash_kind == "oom" and self.ctx.cfg.research.oom_retry and not last.no_retry:
            return last
        return None

    def strategy_note(self) -> str:
        if self.ctx.history.last_failed_streak() >= 3:
            return ("The last 3 experiments did not improve the metric. Change strategy: try a clearly "
                    "different direction than the recent attempts.")
        return ""

    # ------------------------------------------------------------ requests
    async def _request(self, aw: Awaitable[Proposal]) -> Proposal | None:
        """Await a model request as a task that `cancel_requests` can end (then: None)."""
        task = asyncio.ensure_future(aw)
        self._requests.add(task)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
            self._requests.discard(task)
        if task.cancelled():
            return None
        return task.result()

    def cancel_requests(self) -> None:
        """A stop: end every model request now, the prepared ones too."""
        for t in list(self._requests):
            t.cancel()
        for t, _ in self._prefetch:
            if not t.done():
                t.cancel()
        self._prefetch = []

    # ------------------------------------------------------------- validate
    def validate(self, proposal: Proposal, files: dict[str, str]) -> tuple[dict[str, str], str]:
        r = self.ctx.cfg.research
        changed = apply_edits(files, proposal.edits, self.ctx.root, r.files_in_scope, r.read_only)
        h = diff_hash(files, changed)
        proposal.lines_changed = line_counts(files, changed)  # in-process: no `git diff --numstat`
        dup = self.ctx.history.find_diff(h)
        if dup is not None:
            raise Rejected(f"this change duplicates experiment #{dup.iteration} ({dup.description}); propose something new")
        return changed, h

    def reserve(self, proposal: Proposal, h: str) -> None:
        """(on the loop) Hold a valid proposal's diff until its row is recorded, so that no other
        slot runs the same change meanwhile."""
        if h in self.reserved or any(r.diff_hash == h for r in self.ctx.in_flight.values()):
            raise Rejected("this change duplicates an experiment that is running now; propose something new")
        self.reserved[h] = proposal

    def release(self, h: str) -> None:
        self.reserved.pop(h, None)

    async def recheck(self, ready: Ready) -> Ready | None:
        """A proposal held during a pause, validated again against the files now."""
        proposal, _, old = ready
        self.release(old)
        r = self.ctx.cfg.research
        files = await self.ctx.thread(read_files, self.ctx, r.files_in_scope)
        try:
            changed, h = await self.ctx.thread(self.validate, proposal, files)
            self.reserve(proposal, h)
        except Rejected as e:
            self.ctx.notice(f"the proposal prepared before the pause no longer applies ({e}); asking again")
            return None
        return proposal, changed, h

    # ------------------------------------------------------------ one round
    async def next(self, n: int) -> Ready | None:
        """A valid proposal for experiment `n` (reserved: `release` it when its row is recorded or
        it is dropped), or None (the round failed or a stop came)."""
        if self.ctx.proposer.pipelined:
            return await self._next(n)
        async with self._round_lock:
            return await self._next(n)

    async def _next(self, n: int) -> Ready | None:
        ctx = self.ctx
        if ctx.parallel:  # the number it will most likely get: after those valid but not started yet
            started = {r.diff_hash for r in ctx.in_flight.values()}
            n = ctx.peek_iteration() + sum(1 for h in self.reserved if h not in started)
        ctx.set_phase(Phase.PROPOSING, n)
        feedback: list[str] = []
        rejected: list[str] = []
        rounds = max(1, ctx.cfg.proposer.repair_rounds + 1)
        pc = await ctx.thread(self.context, feedback, rejected)
        if pc.strategy_note and not self._strategy_active:
            ctx.notice("3 experiments in a row did not improve the metric: " + ("asking the proposer for a different "
                       "direction (temperature +0.2)" if ctx.proposer.name == "llm" else
                       f"the {ctx.proposer.name} proposer goes on with other changes"), "warning")
        self._strategy_active = bool(pc.strategy_note)
        if pc.crash is not None and pc.crash.crash_kind == "oom":
            ctx.notice(f"#{pc.crash.iteration} ran out of memory: asking for one retry at half the device batch")
        first_idea = pc.ideas[0] if pc.ideas else ""
        if first_idea and pc.crash is None and not ctx.proposer.can_address(first_idea, pc):
            await ctx.thread(ctx.mark_idea, first_idea, "skipped",
                             f"the {ctx.proposer.name} proposer cannot act on it (write NAME=VALUE, or use the llm proposer)")
            pc = await ctx.thread(self.context, feedback, rejected)
        attempts = 0
        while True:
            attempts += 1
            if ctx.control.stopping:
                return None
            try:
                proposal = await self._take_prefetch(pc)
                if proposal is None and not ctx.control.stopping:
                    proposal = await self._request(ctx.proposer.propose(pc))
            except ProposalError as e:
                return await self._failed(n, str(e), e)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a proposer bug must not kill the night
                return await self._failed(n, f"{type(e).__name__}: {e}", None)
            if proposal is None:  # cancelled by a stop
                return None
            self._account_cost(proposal)
            label_retry(proposal, pc.crash)
            try:
                changed, h = await ctx.thread(self.validate, proposal, pc.files)
                self.reserve(proposal, h)
            except Rejected as e:
                ctx.bus.emit(ProposalRejected(n, str(e), attempts))
                await ctx.thread(ctx.results.append_event, {"kind": "proposal_rejected", "iteration": n, "reason": str(e),
                                                            "description": proposal.description, "at": now()})
                if attempts >= rounds + (0 if ctx.proposer.name == "llm" else 8):
                    return await self._failed(n, f"{attempts} proposals rejected; last: {e}", None)
                feedback.append(str(e))
                rejected.append(proposal.description)
                pc.feedback, pc.rejected = list(feedback), list(rejected)
                continue
            self.failed_in_row = 0
            ctx.bus.emit(ProposalReady(n, proposal.description, proposal.hypothesis, proposal.idea))
            return proposal, changed, h

    async def _failed(self, n: int, reason: str, err: ProposalError | None) -> None:
        """A failed round: recorded, not an experiment (max_iterations does not count it)."""
        ctx = self.ctx
        ctx.bus.emit(ProposalFailed(n, reason))
        await ctx.thread(ctx.results.append_event, {"kind": "proposal_failed", "iteration": n, "reason": reason, "at": now()})
        if err is not None and err.exhausted and not err.retryable:
            self.end_reason = f"nothing left to propose: {reason}"
            return None
        self.failed_in_row += 1
        limit = ctx.cfg.proposer.max_failed_rounds
        if limit and self.failed_in_row >= limit:
            rounds = f"{self.failed_in_row} round{'s' if self.failed_in_row != 1 else ''}"
            what = ("check [proposer] model, api_base and the provider's key in the environment" if ctx.proposer.name == "llm"
                    else "add ideas to the backlog or widen files_in_scope")
            self.end_reason = (f"the {ctx.proposer.name} proposer failed {rounds} in a row (last: {reason}); {what}, "
                               "then start again (the session resumes)")
            return None
        backoff = min(300.0, self.backoff_base_s * (2 ** min(self.failed_in_row - 1, 8)))
        ctx.notice(f"proposal failed ({reason}); trying again in {backoff:.0f} s", "warning")
        await ctx.control.sleep(backoff)
        return None

    def _account_cost(self, p: Proposal) -> None:
        # the proposer's own totals: they include prepared proposals that were never used
        ctx = self.ctx
        total, tokens = ctx.proposer.total_cost, ctx.proposer.total_tokens
        if (total, tokens) != (ctx.total_cost, ctx.total_tokens):
            ctx.total_cost, ctx.total_tokens = total, tokens
            ctx.bus.emit(CostUpdated(ctx.total_cost, ctx.total_tokens, p.cost_usd, p.tokens))
            cap = ctx.cfg.proposer.max_cost_usd
            if cap and ctx.total_cost >= cap:
                ctx.pause(f"cost cap reached: ${ctx.total_cost:.2f} >= max_cost_usd ${cap:.2f}; paused (raise the cap and resume with p)")

    # ------------------------------------------------------------- prefetch
    def start_prefetch(self, during_baseline: bool = False, base: str = "") -> None:
        """Prepare the next proposal while a run trains (the GPU never waits for the model)."""
        ctx = self.ctx
        if not (ctx.proposer.pipelined and ctx.cfg.proposer.pipeline) or ctx.control.stopping:
            return
        running = sum(1 for r in ctx.in_flight.values() if r.is_experiment)
        if ctx.max_iterations and ctx.experiments_this_session + running + len(self._prefetch) >= ctx.max_iterations:
            return
        self._prefetch = [(t, b) for t, b in self._prefetch if not t.cancelled()]
        if len(self._prefetch) >= len(ctx.slots):
            return  # one prepared proposal per slot (a baseline repeat must not pay for another)
        pc = self.context([], [])
        # the last record is the one a repair round is about, or the run now starting is that
        # repair: a prepared proposal is never a repair (next() asks for one when it is due)
        pc.crash = None
        self._prefetch.append((asyncio.ensure_future(ctx.proposer.propose(pc)), base or ctx.best_commit() or ""))

    async def _take_prefetch(self, pc: ProposalContext) -> Proposal | None:
        if not self._prefetch:
            return None
        task, based_on = self._prefetch.pop(0)
        self._requests.add(task)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()  # we were cancelled: the prepared request must not outlive us
            self._requests.discard(task)
        if task.cancelled():
            return None
        try:
            proposal = task.result()
        except ProposalError:
            raise  # the provider failed while we prepared: a failed proposal, not a second try
        except Exception:  # noqa: BLE001
            return None
        if proposal.repair_of is not None or pc.crash is not None:
            return None  # prepared before the last experiment crashed: its repair round goes first
        first = pc.ideas[0] if pc.ideas else ""
        if first and pc.crash is None and proposal.idea != first:
            return None  # the user queued a new idea meanwhile: it goes first
        if based_on != self.ctx.best_commit():
            # the running experiment was kept: do the prepared edits still apply onto the new best?
            r = self.ctx.cfg.research
            try:
                apply_edits(pc.files, proposal.edits, self.ctx.root, r.files_in_scope, r.read_only)
            except Rejected:
                self.ctx.notice("the prepared proposal no longer applies onto the new best; asking again")
                return None
        return proposal


def label_retry(proposal: Proposal, crash: RunRecord | None) -> None:
    """An out-of-memory retry says so in its description (the table, results.tsv, the notes)."""
    if crash is None or crash.crash_kind != "oom" or proposal.repair_of != crash.iteration:
        return
    tag = OOM_RETRY.format(n=crash.iteration)
    if tag not in proposal.description:
        proposal.description = f"{proposal.description} ({tag})"


def sweep_ready(gate: Gate) -> tuple[str, list[Ready] | str] | None:
    """(blocking) When the first queued idea is a sweep: (the idea, its valid proposals, one per
    value — or why it cannot run). None when it is not a sweep."""
    ctx = gate.ctx
    taken = {p.idea for p in gate.reserved.values() if p.idea}
    first = next((i.text for i in ctx.notes.ideas() if i.status == "queued" and i.text not in taken), None)
    if first is None or sweep.parse(first) is None:
        return None
    files = read_files(ctx, ctx.cfg.research.files_in_scope)
    try:
        props = sweep.proposals(first, files)
    except sweep.SweepError as e:
        return first, str(e)
    out: list[Ready] = []
    for p in props:
        try:
            changed, h = gate.validate(p, files)
        except Rejected as e:
            ctx.notice(f"sweep: {p.description} skipped ({e})")
            continue
        out.append((p, changed, h))
    return first, out if out else "every value was tried before"
