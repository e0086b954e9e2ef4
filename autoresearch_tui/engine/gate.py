"""The proposal gate: turns the proposer's answers into valid, new edits — or a failed round.

Builds the proposer's context, validates each answer (scope, read-only files, exact application,
parse, duplicates of any earlier experiment *or of one in flight*), feeds rejections back for
bounded repair rounds, prepares the next proposal while a run trains (prefetch), meters cost
(pausing at the cap) and backs off after failed rounds. Every model request is a task the session
can cancel: a stop never waits for a slow model. Every answer is saved (`transcripts`).

With a **fallback** proposer (`[proposer] fallback`, the offline one for the llm proposer) the GPU
never waits on a failing model: when the model's answer is rejected, its request fails or times
out, or it rests after failed rounds (backoff), or its prepared request is being retried, the
slot's next experiment comes from the fallback at once. The model is not dropped: a rejected
answer goes back to it with the reason for the following experiment (a repair round, prepared
while the run trains), and after a failed round it is asked again when its backoff ends.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable

from ..proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ..proposers import sweep
from ..proposers.edits import Rejected, apply_edits, diff_hash, line_counts
from .context import Ctx, now
from .events import CostUpdated, Phase, ProposalFailed, ProposalReady, ProposalRejected
from .fallback import FallbackRounds
from .health import Health
from .prefetch import Prefetch, Request
from .records import RunRecord
from .transcripts import Transcripts

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
        self.health = Health(ctx)
        self.transcripts = Transcripts(ctx.paths.state_dir, ctx.root)
        self.end_reason = ""
        self.reserved: dict[str, Proposal] = {}  # diff hash -> a valid proposal not yet recorded (held, running)
        self._strategy_active = False
        self.prefetch = Prefetch(self)  # proposals asked for ahead, while a run trains
        self.requests: set[asyncio.Task] = set()
        self._round_lock = asyncio.Lock()  # a fast proposer answers one slot at a time: no two alike
        self.rounds = FallbackRounds(self)  # with a fallback: the model's round, which spans experiments

    @property
    def prepared(self) -> list[Request]:
        return self.prefetch.prepared

    def start_prefetch(self, during_baseline: bool = False, base: str = "") -> None:
        """Prepare the next proposal while a run trains (the GPU never waits for the model)."""
        self.prefetch.start(base)

    @property
    def fallback(self) -> Proposer | None:
        return self.ctx.fallback

    @property
    def backoff_base_s(self) -> float:
        return self.health.backoff_base_s

    @backoff_base_s.setter
    def backoff_base_s(self, value: float) -> None:
        self.health.backoff_base_s = value

    @property
    def failed_in_row(self) -> int:
        return self.health.failed_in_row

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
    async def request(self, aw: Awaitable[Proposal]) -> Proposal | None:
        """Await a model request as a task that `cancel_requests` can end (then: None)."""
        task = asyncio.ensure_future(aw)
        self.requests.add(task)
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
            self.requests.discard(task)
        if task.cancelled():
            return None
        return task.result()

    def cancel_requests(self) -> None:
        """A stop: end every model request now, the prepared ones too."""
        for t in list(self.requests):
            t.cancel()
        self.prefetch.cancel()

    # ---------------------------------------------------------- transcripts
    async def save(self, p: Proposal | ProposalError, n: int, attempt: int, outcome: str, reason: str = "") -> str:
        """Save a model's answer (or failed request) under .autoresearch/proposals/; its path ("" when
        there is nothing to save: a proposer without a model, or a disk that refuses)."""
        ex = p.exchange
        if ex is None:
            return ""
        tokens, cost = (p.tokens, p.cost_usd) if isinstance(p, Proposal) else (0, 0.0)
        try:
            return await self.ctx.thread(self.transcripts.write, ex, n, attempt, outcome, reason, tokens, cost)
        except OSError as e:
            self.ctx.notice(f"a model's answer could not be saved ({e})", "warning")
            return ""

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
        fallback = self.fallback is not None
        feedback: list[str] = list(self.rounds.feedback) if fallback else []
        rejected: list[str] = list(self.rounds.rejected) if fallback else []
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
        if fallback:
            return await self.rounds.next(n, pc, rounds)
        attempts = 0
        transcripts: list[str] = []
        while True:
            attempts += 1
            if ctx.control.stopping:
                return None
            try:
                proposal = await self.ask_model(pc, n)
            except ProposalError as e:
                path = await self.save(e, n, attempts, "failed", str(e))
                return await self._failed(n, str(e), e, e.kind, path)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a proposer bug must not kill the night
                return await self._failed(n, f"{type(e).__name__}: {e}", None)
            if proposal is None:  # cancelled by a stop
                return None
            ready, why = await self.judge(n, proposal, pc, attempts, transcripts)
            if ready is not None:
                return ready
            if attempts >= rounds + (0 if ctx.proposer.name == "llm" else 8):
                return await self._failed(n, f"{attempts} proposals rejected; last: {why}", None, "format")
            feedback.append(why)
            rejected.append(proposal.description)
            pc.feedback, pc.rejected = list(feedback), list(rejected)

    async def ask_model(self, pc: ProposalContext, n: int) -> Proposal | None:
        """The prepared proposal if it is still good, else a new request (None: a stop came)."""
        proposal = await self.prefetch.take(pc, n)
        if proposal is None and not self.ctx.control.stopping:
            proposal = await self.request(self.prefetch.call(pc, Request()))
        return proposal

    async def judge(self, n: int, proposal: Proposal, pc: ProposalContext, attempt: int,
                     transcripts: list[str]) -> tuple[Ready | None, str]:
        """Validate and reserve a model's proposal: (ready, "") or (None, why it was rejected).
        Either way its answer is saved and its transcript added to `transcripts`."""
        ctx = self.ctx
        self.account_cost(proposal)
        label_retry(proposal, pc.crash)
        try:
            changed, h = await ctx.thread(self.validate, proposal, pc.files)
            self.reserve(proposal, h)
        except Rejected as e:
            path = await self.save(proposal, n, attempt, "rejected", str(e))
            transcripts += [path] if path else []
            ctx.bus.emit(ProposalRejected(n, str(e), attempt))
            await self._event({
                "kind": "proposal_rejected", "iteration": n, "reason": str(e), "description": proposal.description, "at": now(),
                "attempt": attempt, "proposer": ctx.proposer.name, "tokens": proposal.tokens, "cost_usd": round(proposal.cost_usd, 6),
                "transcript": path})
            return None, str(e)
        path = await self.save(proposal, n, attempt, "accepted")
        proposal.proposer, proposal.attempts = ctx.proposer.name, attempt
        proposal.transcripts = transcripts + ([path] if path else [])
        self.health.succeeded()
        ctx.bus.emit(ProposalReady(n, proposal.description, proposal.hypothesis, proposal.idea))
        return (proposal, changed, h), ""

    async def _failed(self, n: int, reason: str, err: ProposalError | None, kind: str = "", transcript: str = "") -> None:
        """A failed round without a fallback: recorded, not an experiment (max_iterations does not
        count it); the loop waits out the backoff, or ends after max_failed_rounds in a row."""
        ctx = self.ctx
        await self.record_failure(n, reason, kind, transcript)
        if err is not None and err.exhausted and not err.retryable:
            self.end_reason = f"nothing left to propose: {reason}"
            return None
        limit = ctx.cfg.proposer.max_failed_rounds
        ending = bool(limit) and self.health.failed_in_row + 1 >= limit
        backoff = self.health.failed(reason, kind, quiet=ending)
        if ending:
            k = self.health.failed_in_row
            self.end_reason = (f"the {ctx.proposer.name} proposer failed {k} round{'s' if k != 1 else ''} in a row (last: {reason}); "
                               f"{self.health.hint(kind, reason)}; then start again (the session resumes)")
            return None
        ctx.notice(f"proposal failed ({reason}); trying again in {backoff:.0f} s", "warning")
        await ctx.control.sleep(backoff)
        return None

    async def record_failure(self, n: int, reason: str, kind: str, transcript: str) -> None:
        ctx = self.ctx
        ctx.bus.emit(ProposalFailed(n, reason))
        await self._event({"kind": "proposal_failed", "iteration": n, "reason": reason, "at": now(), "error_kind": kind,
                           "proposer": ctx.proposer.name, "transcript": transcript})

    async def _event(self, rec: dict) -> None:
        """A proposal event in runs.jsonl, and in the History (the summary counts them)."""
        await self.ctx.thread(self.ctx.results.append_event, rec)
        self.ctx.history.add_event(rec)

    def account_cost(self, p: Proposal) -> None:
        # the proposer's own totals: they include prepared proposals that were never used
        ctx = self.ctx
        total, tokens = ctx.proposer.total_cost, ctx.proposer.total_tokens
        if (total, tokens) != (ctx.total_cost, ctx.total_tokens):
            ctx.total_cost, ctx.total_tokens = total, tokens
            ctx.bus.emit(CostUpdated(ctx.total_cost, ctx.total_tokens, p.cost_usd, p.tokens))
            cap = ctx.cfg.proposer.max_cost_usd
            if cap and ctx.total_cost >= cap:
                ctx.pause(f"cost cap reached: ${ctx.total_cost:.2f} >= max_cost_usd ${cap:.2f}; paused (raise the cap and resume with p)")


def label_retry(proposal: Proposal, crash: RunRecord | None) -> None:
    """An out-of-memory retry says so in its description (the table, results.tsv, the notes)."""
    if crash is None or crash.crash_kind != "oom" or proposal.repair_of != crash.iteration:
        return
    tag = OOM_RETRY.format(n=crash.iteration)
    if tag not in proposal.description:
        proposal.description = f"{proposal.description} ({tag})"
