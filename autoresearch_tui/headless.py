"""Headless mode: the same engine, one plain line per event on stdout."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any, TextIO

from .engine import events as ev
from .engine.loop import Engine


def _ts() -> str:
    return time.strftime("%H:%M:%S")


def _m(v: Any) -> str:
    return "—" if v is None else f"{float(v):.6f}"


def format_event(e: ev.Event, engine: Engine) -> str | None:
    """The headless line for an event (None: nothing to print). Also used by the TUI's log."""
    name = engine.metric_name
    if isinstance(e, ev.SessionStarted):
        how = f"resuming {e.branch}" if e.resumed else f"new branch {e.branch} from {e.start_branch or '?'}"
        bound = f"max {e.max_iterations} iterations" if e.max_iterations else "until stopped"
        return (f"session: {how} · {e.metric} ({e.direction}) · budget {e.time_budget_s:g}s · {bound} · "
                f"platform {e.platform.get('summary', '?')} · proposer {e.proposer}")
    if isinstance(e, ev.HistoryLoaded):
        if e.records:
            return f"history: {len(e.records)} rows read back; best {_m(e.best and e.best.get('metric'))}"
        return None
    if isinstance(e, ev.ProposalReady):
        idea = f"  [idea: {e.idea}]" if e.idea else ""
        return f"#{e.iteration} proposal: {e.description}{idea}"
    if isinstance(e, ev.ProposalRejected):
        return f"#{e.iteration} rejected (attempt {e.attempt}): {e.reason}"
    if isinstance(e, ev.ProposalFailed):
        return f"#{e.iteration} proposal failed: {e.reason}"
    if isinstance(e, ev.RunStarted):
        return f"#{e.iteration} running {e.commit[:7]} (budget {e.time_budget_s:g}s, kill at {e.timeout_s:g}s) log {e.log_path}"
    if isinstance(e, ev.RunFinished):
        how = "timed out, killed" if e.timed_out else ("killed" if e.killed else f"exit {e.exit_code}")
        return f"#{e.iteration} finished in {e.duration_s:.1f}s ({how})"
    if isinstance(e, ev.Decision):
        r = e.record
        st = r["status"]
        if st == "crash":
            return f"#{r['iteration']} crash    {r.get('description', '')}: {r.get('crash_reason', '')}"
        d = r.get("delta_vs_best")
        dd = f" ({d:+.6f} vs best)" if d is not None and not r.get("is_baseline") else ""
        mem = r.get("memory_gb")
        mm = f"  mem {mem:.1f} GB" if mem is not None else ""
        why = f"  ({r['discard_reason']})" if r.get("discard_reason") else ""
        if r.get("confidence") is not None:
            why += f"  [{r['confidence']:+.1f}σ: {r.get('verdict', '')}]"
        if r.get("flag"):
            why += f"  ! {r['flag']}"
        return f"#{r['iteration']} {st:<8} {name} {_m(r.get('metric'))}{dd}{mm}  {r.get('description', '')}{why}"
    if isinstance(e, ev.OverrideApplied):
        return f"#{e.iteration} marked {e.status} by the user; branch at {e.new_head[:7]}"
    if isinstance(e, ev.ProgressReport):
        return e.text
    if isinstance(e, ev.CostUpdated):
        return f"cost: ${e.total_usd:.4f} total, {e.total_tokens} tokens (+{e.last_tokens})"
    if isinstance(e, ev.Notice):
        return f"{e.level}: {e.text}" if e.level != "info" else e.text
    if isinstance(e, ev.PhaseChanged):
        if e.phase in (ev.Phase.PAUSED, ev.Phase.STOPPING):
            return f"phase: {e.phase}" + (f" ({e.detail})" if e.detail else "")
        return None
    if isinstance(e, ev.SessionEnded):
        return f"session ended: {e.reason}" + (f"; summary in {e.summary_path}" if e.summary_path else "")
    return None


class HeadlessPrinter:
    def __init__(self, engine: Engine, out: TextIO | None = None):
        self.engine = engine
        self.out = out or sys.stdout
        self._last_phase = ""

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.PhaseChanged) and e.phase == self._last_phase:
            return
        if isinstance(e, ev.PhaseChanged):
            self._last_phase = e.phase
        line = format_event(e, self.engine)
        if line is None:
            return
        for i, part in enumerate(line.splitlines() or [""]):
            self.out.write((f"[{_ts()}] " if i == 0 and not part.startswith("===") else "") + part + "\n")
        if isinstance(e, ev.SessionEnded) and e.summary:
            from .summary import completion_text

            self.out.write(completion_text(self.engine.records) + "\n")
        self.out.flush()


async def _run(engine: Engine) -> str:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal() -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            sys.stderr.write("\nstopping: killing the current run (Ctrl-C again to quit at once)\n")
            engine.stop_now()
        else:
            for t in asyncio.all_tasks(loop):
                t.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass
    return await engine.run()


def run_headless(engine: Engine) -> str:
    engine.subscribe(HeadlessPrinter(engine))
    return asyncio.run(_run(engine))
