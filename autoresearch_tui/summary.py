"""`autoresearch-summary.md`: baseline → best, counts, top improvements, dead ends, merge advice.

Built only from the records on disk, so `autoresearch-tui summary` after the fact writes the
same file the session wrote when it ended. Every number comes from the `History`: the same
best, baseline and counts as the status bar, the notes and the charts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import Config
from .engine.records import History, RunRecord
from .engine.paths import paths_for
from .fsio import atomic_write_text, fmt_metric

SUMMARY_NAME = "autoresearch-summary.md"


def _category(rec: RunRecord) -> str:
    mut = rec.mutation
    if isinstance(mut, dict) and mut.get("name"):
        return str(mut["name"])
    if rec.status == "crash":
        return rec.crash_kind or "crash"
    words = (rec.description or "other").split()
    return words[0] if words else "other"


def _mean_text(mean: float | None, n: int) -> str:
    return fmt_metric(mean) + (f" (mean of {n} runs)" if n > 1 else "")


def _outcome(history: History, pct_fmt: str) -> tuple[str, str, str] | None:
    """(baseline, best, change) as text, each value the mean of its measurements; None before a
    baseline. A best that is not better than the baseline is never reported as the best: the
    baseline is, and the change says where the branch stands."""
    (base, nb), (best, n) = history.baseline_reference(), history.reference()
    if base is None or best is None:
        return None
    if not history.beats_baseline():
        b = history.best()
        at_base = b is None or b.commit == (history.baseline() or b).commit
        note = "nothing beat the baseline" + ("" if at_base else f"; the branch measures {_mean_text(best, n)}")
        return _mean_text(base, nb), _mean_text(base, nb), note
    d = best - base
    pct = pct_fmt.format(d / abs(base) * 100) if base else ""
    return _mean_text(base, nb), _mean_text(best, n), f"{d:+.6f}{pct}"


def proposals_section(history: History) -> list[str]:
    """How the model did (only when one proposed): acceptance rate, repair rounds, failed
    requests, fallbacks, tokens and cost per kept improvement. From runs.jsonl alone: the
    experiments' records and the rejected / failed proposals recorded as events."""
    runs = [r for r in history.experiments() if r.reapply_of is None]
    by_model = [r for r in runs if r.proposer not in ("", "mutate") and not r.fallback]
    fallbacks = [r for r in runs if r.fallback]
    events = [e for e in history.events if e.get("proposer", "") not in ("", "mutate")]  # (older events: no proposer)
    rejected = [e for e in events if e.get("kind") == "proposal_rejected"]
    failed = [e for e in events if e.get("kind") == "proposal_failed"]
    if not by_model and not fallbacks and not rejected and not failed:
        return []
    answers = len(by_model) + len(rejected)
    repairs = sum(1 for r in by_model if r.attempts > 1) + sum(1 for e in rejected if int(e.get("attempt") or 1) > 1)
    requests_failed = sum(1 for e in failed if e.get("error_kind") != "format")
    tokens = sum(r.tokens for r in runs) + sum(int(e.get("tokens") or 0) for e in rejected)
    cost = sum(r.cost_usd for r in runs) + sum(float(e.get("cost_usd") or 0.0) for e in rejected)
    kept = len(history.improvements())
    rate = f" ({len(by_model) / answers * 100:.0f}%)" if answers else ""
    per_keep = f"${cost / kept:.4f} per kept improvement ({kept})" if kept else "no kept improvement yet"
    share = f" ({len(fallbacks) / len(runs) * 100:.0f}% of the experiments)" if runs else ""
    return [
        "", "## Proposals", "",
        f"- Acceptance: {len(by_model)} of {answers} model answers became experiments{rate}; {len(rejected)} rejected "
        "(out of scope, not applying, not parsing, duplicates, no edits).",
        f"- Repair rounds: {repairs} (an answer sent back to the model with the reason).",
        f"- Failed requests: {requests_failed}; failed rounds: {len(failed)}.",
        f"- Fallbacks: {len(fallbacks)}{share} ran the offline proposer's change while the model failed.",
        f"- Tokens: {tokens:,}; cost ${cost:.4f}; {per_keep}.",
        "- Every prompt and raw answer: `.autoresearch/proposals/` (linked from each record's `transcripts`).",
    ]


def completion_text(history: History) -> str:
    c = history.counts()
    lines = [f"=== Autoresearch Complete ({len(history.experiments())} iterations) ==="]
    out = _outcome(history, ", {:+.2f}%")
    if out is not None:
        lines.append(f"Baseline: {out[0]} → Best: {out[1]} ({out[2]})")
    # crashes count every crashed run: a baseline that crashed is one too (the session ended on it)
    crashes = sum(1 for r in history.records if r.status == "crash")
    lines.append(f"Keeps: {c['keep']} | Discards: {c['discard']} | Crashes: {crashes}")
    crashed_base = [r for r in history.records if not r.is_experiment and r.status == "crash"]
    if crashed_base and history.baseline() is None:
        lines.append(f"Baseline crashed: {crashed_base[-1].crash_reason[:160]}")
    best = history.best()
    if best and history.beats_baseline():
        lines.append(f"Best experiment: #{best.iteration} — {best.description}")
    return "\n".join(lines)


def _on_branch(history: History) -> list[RunRecord]:
    """The commits the research branch holds beyond its start, oldest first: the loop's keeps,
    the re-applied or reverting commits a user's `k`/`d` made (their re-measurements), and the
    keeps the user later discarded (still on the branch, reverted after them)."""
    out = []
    for r in history:
        if r.is_baseline or len(r.commit) < 7:
            continue
        if r.sets_best or (r.override and r.override.get("previous") == "keep"):
            out.append(r)
    return out


def _worse_or_better(gain: float, direction: str) -> str:
    if gain == 0:
        return "equal"
    return "better" if (gain < 0) == (direction == "minimize") else "worse"


def render(cfg: Config, history: History, platform: dict[str, Any], cost_usd: float, started_at: float | None, start_branch: str = "") -> str:
    best, c = history.best(), history.counts()
    runs = history.experiments()
    m = cfg.metric
    times = [r.started_at for r in history if r.started_at] + [r.ended_at for r in history if r.ended_at]
    t0 = min(times) if times else started_at
    t1 = max(times) if times else started_at
    fmt_t = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "?"  # noqa: E731
    wall = (t1 - t0) if (t0 and t1) else 0
    run_time = sum(float(r.duration_s or 0) for r in history)
    out = [
        "# AutoResearch Summary",
        "",
        f"**Research session:** {cfg.branch}",
        f"**Platform:** {platform.get('summary', 'unknown')}",
        f"**Date:** {fmt_t(t0)} → {fmt_t(t1)}",
        f"**Total iterations:** {len(runs)}",
        f"**Time budget / run:** {cfg.research.time_budget_s:g} s",
        f"**Wall time:** {wall / 3600:.2f} h (experiments running {run_time / max(wall, 1e-9) * 100:.0f}% of it)" if wall else "**Wall time:** —",
        f"**Cost:** ${cost_usd:.2f}" + (" (LLM)" if cfg.proposer.kind == "llm" else " (offline proposer)"),
        "",
        "## Results",
        "",
        f"| Baseline {m.name} | Best {m.name} | Improvement | Best commit |",
        "|---|---|---|---|",
    ]
    result = _outcome(history, " ({:+.2f}%)")
    shown = best if history.beats_baseline() else history.baseline()
    if result is not None and shown is not None:
        out.append(f"| {result[0]} | {result[1]} | {result[2]} | {shown.commit[:7]} |")
    else:
        out.append("| — | — | — | — |")
    out += [
        "",
        f"Keep {c['keep']} · discard {c['discard']} · crash {c['crash']} ({m.direction} {m.name}).",
        "",
        "## Top improvements (kept commits, by their own gain)",
        "",
        "| Rank | # | Commit | Metric | Gain | Description |",
        "|---|---|---|---|---|---|",
    ]
    improvements = history.improvements()
    for i, r in enumerate(improvements[:10], 1):
        out.append(f"| {i} | {r.iteration} | {r.commit[:7]} | {fmt_metric(r.metric)} | {r.gain:+.6f} | {r.description} |")
    if not improvements:
        out.append("| — | | | | | nothing beat the baseline |")
    user_kept = history.kept_by_user()
    if user_kept:
        out += ["", "## Kept by you", "",
                "Experiments you kept with `k` although the loop discarded them; the branch was re-measured after each.", ""]
        for r in user_kept:
            line = f"- #{r.iteration} `{r.commit[:7]}` {r.description}: {fmt_metric(r.metric)}"
            if r.gain is not None:
                line += f", {r.gain:+.6f} vs the best before it ({_worse_or_better(r.gain, m.direction)})"
            again = next((x for x in history if x.remeasure_of == r.iteration and x.metric is not None), None)
            if again is not None:
                line += f"; re-measured on the branch as #{again.iteration}: {fmt_metric(again.metric)}"
            out.append(line)
    out += ["", "## What didn't work", "", "| Category | Tries | Outcome | Examples |", "|---|---|---|---|"]
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.status in ("discard", "crash"):
            groups[_category(r)].append(r)
    for cat, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        nc = sum(1 for r in rs if r.status == "crash")
        outcome = ", ".join(x for x in (f"{len(rs) - nc} discard" if len(rs) > nc else "", f"{nc} crash" if nc else "") if x)
        ex = "; ".join(r.description for r in rs[:3])
        out.append(f"| {cat} | {len(rs)} | {outcome} | {ex} |")
    if not groups:
        out.append("| — | 0 | | |")
    out += proposals_section(history)
    on_branch = _on_branch(history)
    out += ["", "## Merge recommendation", ""]
    if on_branch:
        target = start_branch or "main"
        shas = " ".join(r.commit[:12] for r in on_branch)
        out += [
            f"{len(on_branch)} kept commit(s) on `{cfg.branch}`. Nothing is merged for you; to take the result:",
            "",
            "```sh",
            f"git switch {target}",
            f"git merge --squash {cfg.branch}   # all kept changes as one commit",
            f"git commit -m \"autoresearch {cfg.tag}: {m.name} {fmt_metric(history.baseline_reference()[0])} -> {fmt_metric(history.reference()[0])}\"",
            "# or, one by one:",
            f"# git cherry-pick {shas}",
            "```",
        ]
    else:
        out.append("No experiment beat the baseline: nothing to merge.")
    out += ["", "## Completion", "", "```", completion_text(history), "```", ""]
    return "\n".join(out)


def write_summary(cfg: Config, history: History, platform: dict[str, Any], cost_usd: float = 0.0, started_at: float | None = None) -> tuple[Path, str]:
    start_branch = ""
    try:
        start_branch = json.loads(paths_for(cfg.root).state_file.read_text()).get("start_branch", "")
    except (OSError, ValueError):
        pass
    text = render(cfg, history, platform, cost_usd, started_at, start_branch)
    path = cfg.root / SUMMARY_NAME
    atomic_write_text(path, text)
    return path, text
