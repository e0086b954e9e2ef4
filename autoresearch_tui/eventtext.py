"""Events as one line of text each: the headless printer prints them, the TUI shows some as
notifications. Neutral ground between the two (the UI never imports headless)."""

from __future__ import annotations

from .engine import events as ev
from .fsio import fmt_metric


def format_event(e: ev.Event, metric_name: str) -> str | None:
    """The one-line text of an event (None: nothing to say): headless prints it, the TUI notifies it."""
    name = metric_name
    if isinstance(e, ev.SessionStarted):
        how = f"resuming {e.branch}" if e.resumed else f"new branch {e.branch} from {e.start_branch or '?'}"
        bound = f"max {e.max_iterations} iterations" if e.max_iterations else "until stopped"
        return (f"session: {how} · {e.metric} ({e.direction}) · budget {e.time_budget_s:g}s · {bound} · "
                f"platform {e.platform.get('summary', '?')} · proposer {e.proposer}")
    if isinstance(e, ev.PlatformDetected):
        return f"platform: {e.platform.get('summary', '?')}"
    if isinstance(e, ev.HistoryLoaded):
        if e.records:
            return f"history: {len(e.records)} rows read back; best {fmt_metric(e.best.metric if e.best else None)}"
        return None
    if isinstance(e, ev.ProposalReady):
        idea = f"  [idea: {e.idea}]" if e.idea else ""
        why = f"  [{e.fallback}]" if e.fallback else ""
        return f"#{e.iteration} proposal: {e.description}{idea}{why}"
    if isinstance(e, ev.ModelActivity):
        return f"model: {e.text}"
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
        if r.status == "crash":
            return f"#{r.iteration} crash    {r.description}: {r.crash_reason}"
        d = r.delta_vs_best
        dd = f" ({d:+.6f} vs best)" if d is not None and not r.is_baseline else ""
        mm = f"  mem {r.memory_gb:.1f} GB" if r.memory_gb is not None else ""
        why = f"  ({r.discard_reason})" if r.discard_reason else ""
        if r.confidence is not None:
            why += f"  [{r.confidence:+.1f}σ: {r.verdict}]"
        if r.flag:
            why += f"  ! {r.flag}"
        return f"#{r.iteration} {r.status:<8} {name} {fmt_metric(r.metric)}{dd}{mm}  {r.description}{why}"
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
