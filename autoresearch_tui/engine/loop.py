"""The experiment loop: an asyncio state machine that knows nothing about any UI.

Subscribers get typed events (`events.py`); commands are plain methods (pause, resume,
stop_after_run, stop_now, kill_run, detach, override, add_idea) to be called on the engine's
event loop. Git, file and process work runs in threads; the run itself is waited on by polling.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from .. import config as config_mod
from ..proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ..proposers.edits import Rejected, apply_edits, diff_hash, line_counts
from . import runner
from .events import (
    BacklogChanged, CostUpdated, Decision, Event, HistoryLoaded, Notice, OverrideApplied, Phase,
    PhaseChanged, ProgressReport, ProposalFailed, ProposalReady, ProposalRejected, RunFinished,
    RunStarted, SessionEnded, SessionStarted,
)
from .ledger import GitError, Ledger
from .measure import delta, evaluate_run, hash_files
from .policy import decide, noise_of, reference_of
from .notes import Idea, Notes, clean_idea, render_notes
from .preflight import preflight
from .results import ResultsStore
from .state import SessionLock, StateFile


class SetupError(Exception):
    """The session cannot start; `str()` is the one-line message (exit code 2)."""


def _now() -> float:
    return time.time()


class Engine:
    def __init__(
        self,
        cfg: config_mod.Config,
        proposer: Proposer | None = None,
        max_iterations: int | None = None,
        platform: dict[str, Any] | None = None,
        poll_s: float = 0.05,
    ):
        self.cfg = cfg
        self.root = cfg.root
        self.ledger = Ledger(self.root, cfg.tag)
        self.results = ResultsStore(self.root, cfg.research.results_file, cfg.metric.name)
        self.state_dir = self.root / ".autoresearch"
        self.logs_dir = self.state_dir / "logs"
        self.state = StateFile(self.state_dir)
        self.lock = SessionLock(self.state_dir)
        self.notes = Notes(self.root)
        if proposer is None:
            from ..proposers import make_proposer

            proposer = make_proposer(cfg)
        self.proposer = proposer
        self.max_iterations = cfg.research.max_iterations if max_iterations is None else max_iterations
        self.platform = platform
        self.poll_s = poll_s
        self._subs: list[Callable[[Event], None]] = []
        self.records: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.baseline: dict[str, Any] | None = None
        self.phase = Phase.STARTING
        self.iteration = 0
        self.experiments_this_session = 0
        self.paused = False
        self.stopping = False
        self.detaching = False
        self.start_branch = ""
        self.resumed = False
        self.session_started_at = _now()
        self.current_run: runner.RunHandle | None = None
        self.current_iteration: int | None = None
        self._kill_reason = ""
        self._kill = asyncio.Event()
        self._wake = asyncio.Event()
        self._overrides: list[tuple[int, str]] = []
        self._remeasure: dict[str, Any] | None = None
        self._prefetch: asyncio.Task | None = None
        self._prefetch_based_on = ""
        self._readonly_hashes: dict[str, str] = {}
        self._failed_in_row = 0
        self._strategy_active = False
        self.total_cost = 0.0
        self.total_tokens = 0
        self.end_reason = ""
        self.summary_text = ""

    # ---------------------------------------------------------------- events
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subs.append(fn)

    def emit(self, ev: Event) -> None:
        for fn in list(self._subs):
            try:
                fn(ev)
            except Exception:  # a broken subscriber must not stop the loop
                pass

    def _phase(self, phase: str, detail: str = "", iteration: int | None = None) -> None:
        self.phase = phase
        self.emit(PhaseChanged(phase, self.iteration if iteration is None else iteration, detail))

    def notice(self, text: str, level: str = "info") -> None:
        self.emit(Notice(level, text))

    # -------------------------------------------------------------- commands
    def pause(self) -> None:
        if not self.paused and self.phase != Phase.STOPPED:
            self.paused = True
            self.notice("paused: the current run (if any) finishes; no new experiment starts")
            if self.current_run is None:
                self._phase(Phase.PAUSED)
            self._wake.set()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.notice("resumed")
            self._wake.set()

    def toggle_pause(self) -> None:
        self.resume() if self.paused else self.pause()

    def stop_after_run(self) -> None:
        if self.phase == Phase.STOPPED:
            return
        self.stopping = True
        self._phase(Phase.STOPPING, "stops after the current run")
        self._wake.set()

    def stop_now(self) -> None:
        if self.phase == Phase.STOPPED:
            return
        self.stopping = True
        if self.current_run is not None:
            self._kill_reason = "killed: the session was stopped by the user"
            self._kill.set()
        self._phase(Phase.STOPPING, "stopping now")
        self._wake.set()

    def kill_run(self) -> bool:
        if self.current_run is None:
            return False
        self._kill_reason = "killed by the user"
        self._kill.set()
        return True

    def detach(self) -> None:
        """Quit without touching a running experiment; the next start re-attaches to it."""
        self.detaching = True
        self.stopping = True
        self._wake.set()

    def override(self, iteration: int, status: str) -> None:
        if status not in ("keep", "discard"):
            raise ValueError(status)
        self._overrides.append((iteration, status))
        if self.current_run is not None:
            self.notice(f"#{iteration} will be marked {status} when the current run ends")
        self._wake.set()

    def add_idea(self, text: str) -> bool:
        text = clean_idea(text)
        if not text:
            return False
        ideas = self.notes.ideas()
        ideas.append(Idea(text))
        self.notes.write_backlog(ideas)
        self.emit(BacklogChanged([i.to_dict() for i in ideas]))
        self._wake.set()
        return True

    # ------------------------------------------------------------ utilities
    @property
    def metric_name(self) -> str:
        return self.cfg.metric.name

    def _thread(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    def _record_by_iter(self, n: int) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("iteration") == n), None)

    def _recompute_best(self) -> None:
        keeps = [r for r in self.records if r.get("status") == "keep" and r.get("metric") is not None]
        self.best = keeps[-1] if keeps else None
        self.baseline = keeps[0] if keeps else None
        base = next((r for r in self.records if r.get("is_baseline") and r.get("metric") is not None), None)
        if base:
            self.baseline = base

    def best_commit(self) -> str | None:
        if self._remeasure:
            return self._remeasure["commit"]
        return self.best.get("commit") if self.best else None

    def counts(self) -> dict[str, int]:
        from ..summary import stats

        return stats(self.records)["counts"]

    # ----------------------------------------------------------------- setup
    def _setup_sync(self) -> list[str]:
        """Everything before the first iteration that touches disk. Returns notices."""
        notes: list[str] = []
        report = preflight(self.cfg, for_session=True)
        if report.errors:
            raise SetupError(report.errors[0])
        try:
            self.lock.acquire()
        except Exception as e:
            raise SetupError(str(e)) from None
        stale = self.ledger.clear_stale_index_lock()
        if stale:
            notes.append(stale)
        self.ledger.ensure_excludes()
        self.ledger.add_exclude("/" + self.cfg.research.results_file)
        self.resumed, self.start_branch = self.ledger.start_or_resume()
        st = self.state.read()
        if self.resumed and st.get("start_branch"):
            self.start_branch = st["start_branch"]
        fingerprint = {"metric": self.metric_name, "direction": self.cfg.metric.direction, "command": self.cfg.research.command}
        if self.resumed and st.get("fingerprint") and st["fingerprint"] != fingerprint:
            notes.append(
                f"{self.cfg.branch} was started with a different configuration ({json.dumps(st['fingerprint'])}); "
                "results compare only within one configuration: consider a new branch_tag"
            )
        self.state.update(tag=self.cfg.tag, start_branch=self.start_branch, fingerprint=fingerprint)
        self.results.ensure_files()
        loaded = self.results.load()
        notes.extend(loaded.warnings)
        self.records = loaded.records
        self._recompute_best()
        # an override whose re-measurement never happened
        ov = [e for e in loaded.events if e.get("kind") == "override"]
        if ov and (not self.best or float(ov[-1].get("at", 0)) > float(self.best.get("ended_at", 0) or 0)):
            self._remeasure = {"commit": ov[-1]["new_head"], "of": ov[-1]["iteration"]}
        # the evaluator's expected content: as committed at the session's start
        base_commit = self.baseline.get("commit") if self.baseline and len(self.baseline.get("commit", "")) == 40 else None
        ref0 = self.ledger.rev(self.ledger.experiment_ref(0)) if self.resumed else None
        anchor = base_commit or ref0 or self.ledger.head()
        for p in self.cfg.research.read_only:
            blob = self.ledger.show_file(anchor, p)
            if blob is not None:
                import hashlib

                self._readonly_hashes[p] = hashlib.sha256(blob).hexdigest()
        return notes

    def _platform_sync(self) -> dict[str, Any]:
        if self.platform is not None:
            return self.platform
        cache = self.state_dir / "platform.json"
        try:
            data = json.loads(cache.read_text())
            if _now() - float(data.get("detected_at", 0)) < 6 * 3600:
                return data
        except (OSError, ValueError):
            pass
        from .platform import detect

        data = detect()
        data["detected_at"] = _now()
        try:
            cache.write_text(json.dumps(data))
        except OSError:
            pass
        return data

    def _restore_branch_sync(self) -> str | None:
        """Put the research branch on the best commit; clean tracked files. Returns a notice."""
        target = self.best_commit()
        if not target:
            return None
        head = self.ledger.head()
        dirty = [c for c in self.ledger.status() if not c.status.startswith("??")]
        if head != target or dirty:
            self.ledger.reset_hard(target)
            if head != target:
                return f"branch {self.cfg.branch} moved back from {head[:7]} to the best commit {target[:7]}"
            return "tracked files changed by an interrupted experiment were reset to the best commit"
        return None

    def _check_git_sync(self, commit: str) -> str:
        """A run must not move HEAD or the research branch; if it did, put them back and say so."""
        if not commit or len(commit) != 40:
            return ""
        problems = []
        ref = f"refs/heads/{self.cfg.branch}"
        # one git process in the normal case: HEAD's commit and where HEAD points
        out = self.ledger.git("log", "-1", "--format=%H%x00%D", "HEAD", check=False).strip()
        head_sha, _, deco = out.partition("\0")
        on_branch = f"HEAD -> {self.cfg.branch}" in [d.strip() for d in deco.split(",")]
        if not on_branch:
            problems.append("switched HEAD away from the research branch")
            self.ledger.git("symbolic-ref", "HEAD", ref, check=False)
            head_sha = self.ledger.rev(ref) or ""
        if head_sha != commit:
            problems.append("moved the research branch")
            self.ledger.git("update-ref", ref, commit, check=False)
        if not problems:
            return ""
        self.ledger.git("reset", "-q", "--hard", commit, check=False)
        return "the run changed the repository's git state (" + ", ".join(problems) + "): result invalid; restored"

    def _check_evaluator_sync(self) -> list[str]:
        """Paths of read-only files whose content is not what it must be."""
        now = hash_files(self.root, list(self._readonly_hashes))
        return [p for p, h in self._readonly_hashes.items() if now.get(p) != h]

    def _restore_evaluator_sync(self, paths: list[str]) -> None:
        anchor = self.best_commit() or "HEAD"
        self.ledger.restore_paths(anchor, paths)

    # ----------------------------------------------------------------- main
    async def run(self) -> str:
        """Run the session until stopped or bounded. Returns why it ended."""
        self._kill = asyncio.Event()
        self._wake = asyncio.Event()
        try:
            notices = await self._thread(self._setup_sync)
        except SetupError:
            raise
        except GitError as e:
            raise SetupError(f"{self.root}: {e}") from None
        runner.become_subreaper()
        try:
            self.platform = await self._thread(self._platform_sync)
            self.emit(
                SessionStarted(
                    branch=self.cfg.branch, tag=self.cfg.tag, start_branch=self.start_branch, resumed=self.resumed,
                    metric=self.metric_name, direction=self.cfg.metric.direction, max_iterations=self.max_iterations,
                    time_budget_s=self.cfg.research.time_budget_s, platform=self.platform, proposer=self.proposer.name,
                )
            )
            for n in notices:
                self.notice(n, "warning")
            self.iteration = len(self.records)
            self.emit(HistoryLoaded(list(self.records), self.best, self.baseline))
            self.emit(BacklogChanged([i.to_dict() for i in self.notes.ideas()]))
            await self._recover_inflight()
            self.experiments_this_session = 0  # a recovered run belongs to the earlier session
            msg = await self._thread(self._restore_branch_sync)
            if msg:
                self.notice(msg, "warning")
            await self._thread(self._write_notes_sync)
            self.end_reason = await self._main_loop()
        except asyncio.CancelledError:
            self.end_reason = "cancelled"
            raise
        finally:
            await self._shutdown()
        return self.end_reason

    async def _main_loop(self) -> str:
        if self.best is None and not self._remeasure:
            await self._run_experiment(None, baseline=True)
            if self.best is None:
                last = self.records[-1] if self.records else {}
                return f"the baseline run crashed ({last.get('crash_reason', 'no metric')}); see run.log, fix the command and start again"
        # repeated baseline runs measure the noise (only before the first experiment)
        while (not self.stopping and not any(not r.get("is_baseline") for r in self.records)
               and sum(1 for r in self.records if r.get("is_baseline") and r.get("metric") is not None) < self.cfg.metric.baseline_runs):
            done = sum(1 for r in self.records if r.get("is_baseline") and r.get("metric") is not None)
            await self._run_experiment(None, baseline=True, repeat=done + 1)
        while True:
            await self._apply_overrides()
            if self.stopping:
                return "detached: the run goes on and will be re-attached" if self.detaching else "stopped by the user"
            if self.max_iterations and self.experiments_this_session >= self.max_iterations:
                return f"reached max_iterations ({self.max_iterations})"
            if self.paused:
                self._phase(Phase.PAUSED)
                await self._sleep_until_woken(1.0)
                continue
            try:
                if self._remeasure:
                    await self._run_experiment(None, remeasure=self._remeasure)
                    continue
                proposal = await self._get_proposal()
                if proposal is None:
                    if self.end_reason:
                        return self.end_reason
                    continue
                await self._run_experiment(proposal)
            except (OSError, GitError) as e:
                # a full disk, a broken repository: stop cleanly; what was recorded stays, and
                # the next start recovers the interrupted experiment (re-attach, score, or crash)
                msg = f"stopped by an error the loop cannot work around: {e}; fix it and start again (the session resumes)"
                self.notice(msg, "error")
                return msg

    async def _sleep_until_woken(self, timeout: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _shutdown(self) -> None:
        if self._prefetch is not None and not self._prefetch.done():
            self._prefetch.cancel()
        if self.current_run is not None and not self.detaching:
            # never leave a run behind (Textual cancels workers on exit: this is the finally)
            h = self.current_run
            await asyncio.shield(self._thread(runner.kill_tree, h, self.cfg.research.kill_grace_s))
        try:
            await self.proposer.aclose()
        except Exception:
            pass
        try:
            if self.records:
                from ..summary import write_summary

                try:
                    path, text = await self._thread(write_summary, self.cfg, self.records, self.platform or {}, self.total_cost, self.session_started_at)
                except OSError as e:
                    self.notice(f"the summary could not be written ({e}); `autoresearch-tui summary` writes it later", "error")
                    self.emit(SessionEnded(self.end_reason or "ended"))
                else:
                    self.summary_text = text
                    self.emit(SessionEnded(self.end_reason or "ended", str(path), text))
            else:
                self.emit(SessionEnded(self.end_reason or "ended"))
        finally:
            self._phase(Phase.STOPPED)
            self.lock.release()

    # ------------------------------------------------------------- proposals
    def _context(self, feedback: list[str], rejected: list[str]) -> ProposalContext:
        r = self.cfg.research
        files = {}
        for p in r.files_in_scope:
            try:
                files[p] = (self.root / p).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        ro = {}
        for p in r.read_only:
            try:
                ro[p] = (self.root / p).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        program = ""
        if r.program:
            try:
                program = (self.root / r.program).read_text(encoding="utf-8", errors="replace")
            except OSError:
                program = ""
        ideas = [i.text for i in self.notes.ideas() if i.status == "queued"]
        crash = None
        last = self.records[-1] if self.records else None
        if last and last.get("status") == "crash" and last.get("crash_kind") == "trivial" and last.get("repair_of") is None and last.get("description"):
            crash = last
        return ProposalContext(
            iteration=len(self.records), root=self.root, files=files, read_only=ro, goal=r.goal,
            metric=self.metric_name, direction=self.cfg.metric.direction, program=program,
            history=list(self.records), best=self.best, baseline=self.baseline, ideas=ideas,
            feedback=feedback, rejected=rejected, platform=self.platform or {},
            advice=list((self.platform or {}).get("advice", [])), crash=crash,
            strategy_note=self._strategy_note(), temperature=self.cfg.proposer.temperature + self._temperature_boost(),
        )

    def _strategy_note(self) -> str:
        runs = [r for r in self.records if not r.get("is_baseline")]
        tail = runs[-3:]
        if len(tail) == 3 and all(r.get("status") != "keep" for r in tail):
            return ("The last 3 experiments did not improve the metric. Change strategy: try a clearly "
                    "different direction than the recent attempts.")
        return ""

    def _temperature_boost(self) -> float:
        return 0.2 if self._strategy_note() else 0.0

    async def _ask(self, ctx: ProposalContext) -> Proposal:
        return await self.proposer.propose(ctx)

    def _validate(self, proposal: Proposal, files: dict[str, str]) -> tuple[dict[str, str], str]:
        r = self.cfg.research
        changed = apply_edits(files, proposal.edits, self.root, r.files_in_scope, r.read_only)
        h = diff_hash(files, changed)
        proposal.lines_changed = line_counts(files, changed)  # in-process: no `git diff --numstat`
        for rec in self.records:
            if rec.get("diff_hash") == h:
                raise Rejected(f"this change duplicates experiment #{rec['iteration']} ({rec.get('description', '')}); propose something new")
        return changed, h

    async def _get_proposal(self) -> tuple[Proposal, dict[str, str], str] | None:
        n = len(self.records)
        self.iteration = n
        self._phase(Phase.PROPOSING, iteration=n)
        feedback: list[str] = []
        rejected: list[str] = []
        rounds = max(1, self.cfg.proposer.repair_rounds + 1)
        ctx = await self._thread(self._context, feedback, rejected)
        if ctx.strategy_note and not self._strategy_active:
            self.notice("3 experiments in a row did not improve the metric: asking the proposer for a different "
                        "direction (temperature +0.2)", "warning")
        self._strategy_active = bool(ctx.strategy_note)
        first_idea = ctx.ideas[0] if ctx.ideas else ""
        if first_idea and not self.proposer.can_address(first_idea, ctx):
            await self._thread(self._mark_idea_sync, first_idea, "skipped", f"the {self.proposer.name} proposer cannot act on it (write NAME=VALUE, or use the llm proposer)")
            ctx = await self._thread(self._context, feedback, rejected)
        attempts = 0
        while True:
            attempts += 1
            try:
                proposal = await self._take_prefetch(ctx)
                if proposal is None:
                    proposal = await self._ask(ctx)
            except ProposalError as e:
                return await self._proposal_failed(n, str(e), e)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a proposer bug must not kill the night
                return await self._proposal_failed(n, f"{type(e).__name__}: {e}", None)
            self._account_cost(proposal)
            try:
                changed, h = await self._thread(self._validate, proposal, ctx.files)
            except Rejected as e:
                self.emit(ProposalRejected(n, str(e), attempts))
                await self._thread(
                    self.results.append_event,
                    {"kind": "proposal_rejected", "iteration": n, "reason": str(e), "description": proposal.description, "at": _now()},
                )
                if attempts >= rounds + (0 if self.proposer.name == "llm" else 8):
                    return await self._proposal_failed(n, f"{attempts} proposals rejected; last: {e}", None)
                feedback.append(str(e))
                rejected.append(proposal.description)
                ctx.feedback, ctx.rejected = list(feedback), list(rejected)
                continue
            self._failed_in_row = 0
            self.emit(ProposalReady(n, proposal.description, proposal.hypothesis, proposal.idea))
            return proposal, changed, h

    async def _take_prefetch(self, ctx: ProposalContext) -> Proposal | None:
        task, self._prefetch = self._prefetch, None
        if task is None:
            return None
        try:
            proposal = await task
        except ProposalError:
            raise  # the provider failed while we prepared: a failed proposal, not a second try
        except Exception:  # noqa: BLE001
            return None
        first = ctx.ideas[0] if ctx.ideas else ""
        if first and proposal.idea != first:
            return None  # the user queued a new idea meanwhile: it goes first
        if self._prefetch_based_on != self.best_commit():
            # the running experiment was kept: do the prepared edits still apply onto the new best?
            try:
                apply_edits(ctx.files, proposal.edits, self.root, self.cfg.research.files_in_scope, self.cfg.research.read_only)
            except Rejected:
                self.notice("the prepared proposal no longer applies onto the new best; asking again")
                return None
        return proposal

    def _start_prefetch(self, during_baseline: bool = False, base: str = "") -> None:
        if not (self.proposer.pipelined and self.cfg.proposer.pipeline) or self.stopping:
            return
        done_after_this = self.experiments_this_session + (0 if during_baseline else 1)
        if self.max_iterations and done_after_this >= self.max_iterations:
            return
        ctx = self._context([], [])
        self._prefetch_based_on = base or self.best_commit() or ""
        self._prefetch = asyncio.create_task(self._ask(ctx))

    def _account_cost(self, p: Proposal) -> None:
        # the proposer's own totals: they include prepared proposals that were never used
        total, tokens = self.proposer.total_cost, self.proposer.total_tokens
        if (total, tokens) != (self.total_cost, self.total_tokens):
            self.total_cost, self.total_tokens = total, tokens
            self.emit(CostUpdated(self.total_cost, self.total_tokens, p.cost_usd, p.tokens))
            cap = self.cfg.proposer.max_cost_usd
            if cap and self.total_cost >= cap and not self.paused:
                self.notice(f"cost cap reached: ${self.total_cost:.2f} >= max_cost_usd ${cap:.2f}; paused (raise the cap and resume with p)", "warning")
                self.pause()

    async def _proposal_failed(self, n: int, reason: str, err: ProposalError | None) -> None:
        self.emit(ProposalFailed(n, reason))
        await self._thread(self.results.append_event, {"kind": "proposal_failed", "iteration": n, "reason": reason, "at": _now()})
        self.experiments_this_session += 1
        if err is not None and err.exhausted and not err.retryable:
            self.end_reason = f"nothing left to propose: {reason}"
            return None
        self._failed_in_row += 1
        backoff = min(300.0, 2.0 * (2 ** min(self._failed_in_row - 1, 8)))
        self.notice(f"proposal failed ({reason}); trying again in {backoff:.0f} s", "warning")
        await self._sleep_until_woken(backoff)
        return None

    def _mark_idea_sync(self, text: str, status: str, outcome: str) -> None:
        ideas = self.notes.ideas()
        for i in ideas:
            if i.text == text and i.status in ("queued", "running"):
                i.status, i.outcome = status, outcome
                break
        self.notes.write_backlog(ideas)
        self.emit(BacklogChanged([i.to_dict() for i in ideas]))

    # ----------------------------------------------------------- experiments
    def _commit_sync(self, n: int, proposal: Proposal, changed: dict[str, str]) -> tuple[str, str]:
        self.state.update(pending={"iteration": n, "description": proposal.description, "at": _now()})
        msg = self.ledger.clear_stale_index_lock()
        if msg:
            self.notice(msg, "warning")
        for p, text in changed.items():
            (self.root / p).write_text(text, encoding="utf-8")
        body = proposal.description
        if proposal.hypothesis:
            body += "\n\nHypothesis: " + proposal.hypothesis
        sha = self.ledger.commit_files(sorted(changed), body)
        ref = self.ledger.set_ref(n, sha)
        return sha, ref

    async def _run_experiment(
        self, proposal: tuple[Proposal, dict[str, str], str] | None, baseline: bool = False, remeasure: dict[str, Any] | None = None,
        repeat: int = 0,
    ) -> None:
        n = len(self.records)
        self.iteration = n
        rec: dict[str, Any] = {"iteration": n, "proposer": self.proposer.name}
        if proposal is not None:
            p, changed, h = proposal
            self._phase(Phase.COMMITTING, p.description, n)
            parent = self.best_commit() or ""
            sha, ref = await self._thread(self._commit_sync, n, p, changed)
            added, removed = p.lines_changed
            rec.update(
                description=p.description, hypothesis=p.hypothesis, idea=p.idea, mutation=p.mutation,
                diff_hash=h, tokens=p.tokens, cost_usd=round(p.cost_usd, 6), lines_added=added, lines_removed=removed,
                parent=parent, repair_of=p.repair_of,
            )
            if p.idea:
                await self._thread(self._mark_idea_sync, p.idea, "running", f"#{n}")
        else:
            sha = await self._thread(self.ledger.head)
            ref = await self._thread(self.ledger.set_ref, n, sha)
            if remeasure:
                rec.update(description=f"re-measure after the override of #{remeasure['of']}", remeasure_of=remeasure["of"])
            elif repeat > 1:
                k = self.cfg.metric.baseline_runs
                rec.update(description=f"baseline (run {repeat}/{k}, noise estimate)", is_baseline=True)
            else:
                rec.update(description="baseline", is_baseline=True)
        rec.update(commit=sha, ref=ref)
        await self._execute(n, rec, baseline or bool(remeasure))

    def _start_run_sync(self, n: int, rec: dict[str, Any]) -> runner.RunHandle:
        r = self.cfg.research
        bad = self._check_evaluator_sync()
        if bad:
            self._restore_evaluator_sync(bad)
            self.notice(f"read-only file(s) {', '.join(bad)} differed from the committed evaluator before the run; restored", "warning")
        log = self.logs_dir / f"{n:05d}.log"
        handle = runner.start(r.command, self.root, log, self.logs_dir / f"{n:05d}.exit", r.time_budget_s)
        self._link_run_log(log)
        self.state.update(
            pending=None,
            inflight={**handle.to_state(), "iteration": n, "record": rec, "timeout_s": r.effective_timeout},
        )
        return handle

    def _link_run_log(self, log: Path) -> None:
        """`run.log` is the current run's log: a hard link to the per-run file (same bytes, no copy)."""
        target = self.root / "run.log"
        tmp = self.root / ".run.log.tmp"
        try:
            tmp.unlink(missing_ok=True)
            os.link(log, tmp)
            tmp.replace(target)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
                target.unlink(missing_ok=True)
                target.symlink_to(log.relative_to(self.root))
            except OSError:
                pass

    async def _execute(self, n: int, rec: dict[str, Any], is_measure_only: bool) -> None:
        r = self.cfg.research
        self._kill.clear()
        self._kill_reason = ""
        handle = await self._thread(self._start_run_sync, n, rec)
        self.current_run, self.current_iteration = handle, n
        self._phase(Phase.BASELINE if rec.get("is_baseline") else Phase.RUNNING, rec.get("description", ""), n)
        self.emit(RunStarted(n, rec["commit"], rec.get("description", ""), str(handle.log_path), r.time_budget_s, r.effective_timeout, handle.started_at, handle.pid))
        if rec.get("remeasure_of") is None:
            # the next proposal is prepared while this run trains (during the baseline too)
            baseline = bool(rec.get("is_baseline"))
            self._start_prefetch(during_baseline=baseline, base=rec["commit"] if baseline else "")
        try:
            outcome = await runner.wait(handle, r.effective_timeout, r.kill_grace_s, self._kill, self.poll_s)
        except asyncio.CancelledError:
            await asyncio.shield(self._thread(runner.kill_tree, handle, r.kill_grace_s))
            self.current_run = None
            raise
        self.current_run = None
        await self._finish(n, rec, handle, outcome)

    async def _finish(self, n: int, rec: dict[str, Any], handle: runner.RunHandle, outcome: runner.RunOutcome) -> None:
        r, m = self.cfg.research, self.cfg.metric
        self.emit(RunFinished(n, outcome.exit_code, outcome.timed_out, outcome.killed, outcome.duration_s))
        self._phase(Phase.MEASURING, iteration=n)
        meas = await self._thread(evaluate_run, handle.log_path, outcome, m.name, m.pattern, m.secondary, self._kill_reason)
        rec.update(meas)
        rec.update(
            started_at=handle.started_at, ended_at=_now(), log=str(handle.log_path.relative_to(self.root)),
            platform=(self.platform or {}).get("summary", ""), metric_name=m.name,
        )
        git_tamper = await self._thread(self._check_git_sync, rec.get("commit", ""))
        if git_tamper:
            rec["crash_reason"] = git_tamper
            rec["crash_kind"] = "tampering"
            rec["metric"] = None
            self.notice(git_tamper, "error")
        tampered = await self._thread(self._check_evaluator_sync)
        if tampered:
            await self._thread(self._restore_evaluator_sync, tampered)
            rec["crash_reason"] = f"the run modified the read-only evaluator ({', '.join(tampered)}): result invalid; file restored"
            rec["crash_kind"] = "tampering"
            rec["metric"] = None
            self.notice(rec["crash_reason"], "error")
        best_val = self.best.get("metric") if self.best else None
        rec["best_before"] = best_val
        rec["delta_vs_best"] = delta(rec.get("metric"), best_val)
        rec["delta_vs_baseline"] = delta(rec.get("metric"), self.baseline.get("metric") if self.baseline else None)
        if rec.get("crash_reason"):
            status = "crash"
        elif rec.get("is_baseline") or rec.get("remeasure_of") is not None:
            status = "keep"
        elif best_val is None:
            status = "keep"
        else:
            status = await self._decide(n, rec)
        if status == "keep" and not rec.get("is_baseline") and rec.get("remeasure_of") is None and best_val is not None:
            if r.guard_command:
                ok, why = await self._run_guard(n)
                rec["guard"] = "pass" if ok else why
                if not ok:
                    status = "discard"
                    rec["discard_reason"] = f"guard failed: {why}"
        rec["status"] = status
        # record first (fsynced), then move the branch
        await self._thread(self.results.append, rec)
        self.records.append({"kind": "run", **rec})
        if not rec.get("is_baseline"):
            self.experiments_this_session += 1
        if status == "keep":
            self._remeasure = None
            self._recompute_best()
        elif rec.get("remeasure_of") is not None:
            self._remeasure = None  # the overridden state cannot be measured: back to the best
            self.notice(f"the re-measurement after the override of #{rec['remeasure_of']} crashed; the branch goes back to the best measured commit", "error")
        await self._thread(self._after_record_sync, rec)
        if rec.get("idea"):
            outcome_txt = f"#{n} {status}" + (f" ({rec['metric']:.6f})" if rec.get("metric") is not None else "")
            await self._thread(self._mark_idea_sync, rec["idea"], "tried", outcome_txt)
        phase = {"keep": Phase.KEPT, "discard": Phase.DISCARDED, "crash": Phase.CRASHED}[status]
        self._phase(phase, rec.get("description", ""), n)
        self.emit(Decision(dict(rec), self.best, self.baseline))
        self.iteration = n + 1
        done = len([x for x in self.records if not x.get("is_baseline")])
        if done and done % 10 == 0 and not rec.get("is_baseline"):
            self.emit(ProgressReport(done, self.progress_line()))

    async def _decide(self, n: int, rec: dict[str, Any]) -> str:
        m = self.cfg.metric
        spread = noise_of(self.records)
        ref, n_ref = reference_of(self.records, self.best)
        lines = (int(rec.get("lines_added") or 0), int(rec.get("lines_removed") or 0))
        v = decide(rec["metric"], ref, n_ref, m.direction, m.keep_policy, m.min_delta, spread, m.noise_k, lines)
        if v.status == "confirm":
            self._phase(Phase.RUNNING, f"confirming #{n}: {v.verdict}", n)
            second = await self._confirm_run(n)
            if second is None:
                v.status, v.verdict = "discard", "the confirmation run failed"
            else:
                rec["runs"] = [rec["metric"], second]
                rec["metric"] = (rec["metric"] + second) / 2
                v = decide(rec["metric"], ref, n_ref, m.direction, m.keep_policy, m.min_delta, spread, m.noise_k, lines, confirmed_runs=2)
                best_val = self.best.get("metric") if self.best else None
                rec["delta_vs_best"] = delta(rec["metric"], best_val)
        rec.update(verdict=v.verdict, confidence=None if v.confidence is None else round(v.confidence, 3),
                   margin=v.margin, noise=spread, policy=m.keep_policy)
        if v.flag:
            rec["flag"] = v.flag
            self.notice(f"#{n} {rec.get('description', '')}: {v.flag}", "warning")
        return v.status

    async def _confirm_run(self, n: int) -> float | None:
        """Run the same commit once more (the candidate is still checked out)."""
        r, m = self.cfg.research, self.cfg.metric
        log = self.logs_dir / f"{n:05d}.confirm.log"
        self._kill.clear()
        h = await self._thread(runner.start, r.command, self.root, log, self.logs_dir / f"{n:05d}.confirm.exit", r.time_budget_s)
        self.current_run = h
        try:
            out = await runner.wait(h, r.effective_timeout, r.kill_grace_s, self._kill, self.poll_s)
        finally:
            self.current_run = None
        meas = await self._thread(evaluate_run, log, out, m.name, m.pattern, [], "")
        return None if meas.get("crash_reason") else meas.get("metric")

    def _after_record_sync(self, rec: dict[str, Any]) -> None:
        target = self.best_commit()
        if target and rec["status"] != "keep":
            # _check_git_sync has just put HEAD back on the research branch if a run moved it
            self.ledger.reset_hard(target, verified=len(rec.get("commit", "")) == 40)
        elif rec["status"] == "keep":
            # the run may have changed tracked files: back to exactly the kept commit
            if [c for c in self.ledger.status() if not c.status.startswith("??")]:
                self.ledger.reset_hard(rec["commit"])
        self.state.update(inflight=None, pending=None)
        self._write_notes_sync()

    def _write_notes_sync(self) -> None:
        before, after = render_notes(self.cfg, self.records, self.best, self.baseline, self.platform or {})
        self.notes.write(before, self.notes.ideas(), after)

    async def _run_guard(self, n: int) -> tuple[bool, str]:
        r = self.cfg.research
        log = self.logs_dir / f"{n:05d}.guard.log"
        h = await self._thread(runner.start, r.guard_command, self.root, log, self.logs_dir / f"{n:05d}.guard.exit", r.time_budget_s)
        out = await runner.wait(h, r.effective_timeout, r.kill_grace_s, asyncio.Event(), self.poll_s)
        if out.timed_out:
            return False, "the guard command timed out"
        if out.exit_code != 0:
            return False, f"the guard command exited with {out.exit_code}"
        return True, ""

    def progress_line(self) -> str:
        c = self.counts()
        done = c["keep"] + c["discard"] + c["crash"]
        best = self.best.get("metric") if self.best else None
        base = self.baseline.get("metric") if self.baseline else None
        if best is None:
            b = "best —"
        else:
            pct = f" ({(best - base) / abs(base) * 100:+.2f}% vs baseline)" if base else ""
            b = f"best {best:.6f}{pct}"
        return f"=== Iteration {done}: {b}, {c['keep']} keep / {c['discard']} discard / {c['crash']} crash ==="

    # ------------------------------------------------------------- recovery
    async def _recover_inflight(self) -> None:
        st = await self._thread(self.state.read)
        pending, inflight = st.get("pending"), st.get("inflight")
        done = {r.get("iteration") for r in self.records}
        if inflight and inflight.get("iteration") not in done:
            n = int(inflight["iteration"])
            rec = dict(inflight.get("record") or {"iteration": n, "description": "(interrupted)"})
            handle = runner.RunHandle.from_state(inflight)
            if runner.is_alive(handle):
                self.notice(f"re-attached to experiment #{n} (pid {handle.pid}), still running from before the restart")
                self.current_run, self.current_iteration = handle, n
                self._phase(Phase.RUNNING, rec.get("description", ""), n)
                r = self.cfg.research
                self.emit(RunStarted(n, rec.get("commit", ""), rec.get("description", ""), str(handle.log_path), r.time_budget_s, float(inflight.get("timeout_s", r.effective_timeout)), handle.started_at, handle.pid))
                self._kill.clear()
                outcome = await runner.wait(handle, float(inflight.get("timeout_s", r.effective_timeout)), r.kill_grace_s, self._kill, self.poll_s)
                self.current_run = None
            else:
                left = await self._thread(runner.cleanup_leftovers, handle, self.cfg.research.kill_grace_s)
                code = runner.read_exit_code(handle)
                try:
                    ended = handle.log_path.stat().st_mtime
                except OSError:
                    ended = handle.started_at
                outcome = runner.RunOutcome(code, False, False, max(0.0, ended - handle.started_at), 0.0, left)
                self.notice(f"experiment #{n} ended while the app was away; scored from its log")
            await self._finish(n, rec, handle, outcome)
        elif pending and pending.get("iteration") not in done:
            n = int(pending["iteration"])
            head = await self._thread(self.ledger.head)
            sha = head if head != self.best_commit() else ""
            rec = {
                "iteration": n, "description": pending.get("description", "(interrupted)"), "commit": sha or "0000000",
                "crash_reason": "the app stopped after committing this experiment and before its run started",
                "crash_kind": "interrupted", "proposer": self.proposer.name, "ended_at": _now(), "status": "crash",
            }
            if sha:
                rec["ref"] = await self._thread(self.ledger.set_ref, n, sha)
            await self._thread(self.results.append, rec)
            self.records.append({"kind": "run", **rec})
            self.notice(f"experiment #{n} was interrupted before its run: recorded as crash", "warning")
            await self._thread(self.state.update, pending=None)
        elif pending or inflight:
            await self._thread(self.state.update, pending=None, inflight=None)

    # ------------------------------------------------------------ overrides
    async def _apply_overrides(self) -> None:
        while self._overrides:
            n, status = self._overrides.pop(0)
            try:
                await self._thread(self._override_sync, n, status)
            except (GitError, ValueError) as e:
                self.notice(f"cannot mark #{n} {status}: {e}", "error")

    def _override_sync(self, n: int, status: str) -> None:
        rec = self._record_by_iter(n)
        if rec is None:
            raise ValueError("no such experiment")
        if rec.get("status") == status:
            raise ValueError(f"it is already {status}")
        if rec.get("is_baseline") or rec.get("remeasure_of") is not None:
            raise ValueError("the baseline and re-measurements cannot be overridden")
        if status == "keep":
            if rec.get("status") == "crash" or rec.get("metric") is None:
                raise ValueError("a crashed experiment has no metric to keep")
            commit = self.ledger.rev(rec.get("ref") or "") or self.ledger.rev(rec.get("commit", ""))
            if not commit:
                raise ValueError("its commit is gone")
            new_head = self.ledger.cherry_pick_onto_head(commit, f"keep #{n} (user override): {rec.get('description', '')}")
        else:
            if rec.get("status") != "keep":
                raise ValueError("only a kept experiment can be discarded")
            new_head = self.ledger.revert_on_head(rec["commit"], f"discard #{n} (user override): {rec.get('description', '')}")
        ev = {"kind": "override", "iteration": n, "status": status, "previous": rec["status"], "new_head": new_head, "at": _now()}
        self.results.append_event(ev)
        rec["status"] = status
        rec["override"] = ev
        self.results.rewrite_tsv(self.records)
        self._remeasure = {"commit": new_head, "of": n}
        self._recompute_best()
        self.emit(OverrideApplied(n, status, new_head, dict(rec)))
        self.notice(f"#{n} marked {status} by you; the branch is now {new_head[:7]}; it is re-measured before the next experiment")
