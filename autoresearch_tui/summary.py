"""`autoresearch-summary.md`: baseline → best, counts, top improvements, dead ends, merge advice.

Built only from the records on disk, so `autoresearch-tui summary` after the fact writes the
same file the session wrote when it ended.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import Config
from .engine.paths import paths_for
from .fsio import atomic_write_text, fmt_metric

SUMMARY_NAME = "autoresearch-summary.md"


def _category(rec: dict[str, Any]) -> str:
    mut = rec.get("mutation")
    if isinstance(mut, dict) and mut.get("name"):
        return str(mut["name"])
    if rec.get("status") == "crash":
        return str(rec.get("crash_kind") or "crash")
    words = (rec.get("description") or "other").split()
    return words[0] if words else "other"


def stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    base = next((r for r in records if r.get("is_baseline") and r.get("metric") is not None), None)
    keeps = [r for r in records if r.get("status") == "keep" and r.get("metric") is not None]
    base = base or (keeps[0] if keeps else None)
    best = keeps[-1] if keeps else None
    runs = [r for r in records if not r.get("is_baseline")]
    counts = {s: sum(1 for r in runs if r.get("status") == s) for s in ("keep", "discard", "crash")}
    improvement = None
    if base and best:
        improvement = best["metric"] - base["metric"]
    return {"baseline": base, "best": best, "runs": runs, "counts": counts, "improvement": improvement}


def completion_text(records: list[dict[str, Any]]) -> str:
    s = stats(records)
    base, best, c = s["baseline"], s["best"], s["counts"]
    n = len(s["runs"])
    lines = [f"=== Autoresearch Complete ({n} iterations) ==="]
    if base and best:
        d = best["metric"] - base["metric"]
        pct = f", {d / abs(base['metric']) * 100:+.2f}%" if base["metric"] else ""
        lines.append(f"Baseline: {fmt_metric(base['metric'])} → Best: {fmt_metric(best['metric'])} ({d:+.6f}{pct})")
    lines.append(f"Keeps: {c['keep']} | Discards: {c['discard']} | Crashes: {c['crash']}")
    if best:
        lines.append(f"Best experiment: #{best.get('iteration')} — {best.get('description', '')}")
    return "\n".join(lines)


def render(cfg: Config, records: list[dict[str, Any]], platform: dict[str, Any], cost_usd: float, started_at: float | None, start_branch: str = "") -> str:
    s = stats(records)
    base, best, c = s["baseline"], s["best"], s["counts"]
    m = cfg.metric
    times = [r.get("started_at") for r in records if r.get("started_at")] + [r.get("ended_at") for r in records if r.get("ended_at")]
    t0 = min(times) if times else started_at
    t1 = max(times) if times else started_at
    fmt_t = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "?"  # noqa: E731
    wall = (t1 - t0) if (t0 and t1) else 0
    run_time = sum(float(r.get("duration_s") or 0) for r in records)
    out = [
        "# AutoResearch Summary",
        "",
        f"**Research session:** {cfg.branch}",
        f"**Platform:** {platform.get('summary', 'unknown')}",
        f"**Date:** {fmt_t(t0)} → {fmt_t(t1)}",
        f"**Total iterations:** {len(s['runs'])}",
        f"**Time budget / run:** {cfg.research.time_budget_s:g} s",
        f"**Wall time:** {wall / 3600:.2f} h (experiments running {run_time / max(wall, 1e-9) * 100:.0f}% of it)" if wall else "**Wall time:** —",
        f"**Cost:** ${cost_usd:.2f}" + (" (LLM)" if cfg.proposer.kind == "llm" else " (offline proposer)"),
        "",
        "## Results",
        "",
        f"| Baseline {m.name} | Best {m.name} | Improvement | Best commit |",
        "|---|---|---|---|",
    ]
    if base and best:
        d = best["metric"] - base["metric"]
        pct = f" ({d / abs(base['metric']) * 100:+.2f}%)" if base["metric"] else ""
        out.append(f"| {fmt_metric(base['metric'])} | {fmt_metric(best['metric'])} | {d:+.6f}{pct} | {str(best.get('commit', ''))[:7]} |")
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
    kept = [r for r in s["runs"] if r.get("status") == "keep" and r.get("metric") is not None and r.get("best_before") is not None]
    sign = 1 if m.direction == "minimize" else -1
    kept.sort(key=lambda r: sign * (r["metric"] - r["best_before"]))
    for i, r in enumerate(kept[:10], 1):
        out.append(f"| {i} | {r['iteration']} | {str(r.get('commit', ''))[:7]} | {fmt_metric(r['metric'])} | {r['metric'] - r['best_before']:+.6f} | {r.get('description', '')} |")
    if not kept:
        out.append("| — | | | | | nothing beat the baseline |")
    out += ["", "## What didn't work", "", "| Category | Tries | Outcome | Examples |", "|---|---|---|---|"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in s["runs"]:
        if r.get("status") in ("discard", "crash"):
            groups[_category(r)].append(r)
    for cat, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        nc = sum(1 for r in rs if r.get("status") == "crash")
        outcome = ", ".join(x for x in (f"{len(rs) - nc} discard" if len(rs) > nc else "", f"{nc} crash" if nc else "") if x)
        ex = "; ".join(r.get("description", "") for r in rs[:3])
        out.append(f"| {cat} | {len(rs)} | {outcome} | {ex} |")
    if not groups:
        out.append("| — | 0 | | |")
    kept_commits = [r for r in s["runs"] if r.get("status") == "keep" and len(str(r.get("commit", ""))) >= 7]
    out += ["", "## Merge recommendation", ""]
    if kept_commits:
        target = start_branch or "main"
        shas = " ".join(str(r["commit"])[:12] for r in kept_commits)
        out += [
            f"{len(kept_commits)} kept commit(s) on `{cfg.branch}`. Nothing is merged for you; to take the result:",
            "",
            "```sh",
            f"git switch {target}",
            f"git merge --squash {cfg.branch}   # all kept changes as one commit",
            f"git commit -m \"autoresearch {cfg.tag}: {m.name} {fmt_metric(base and base['metric'])} -> {fmt_metric(best and best['metric'])}\"",
            "# or, one by one:",
            f"# git cherry-pick {shas}",
            "```",
        ]
    else:
        out.append("No experiment beat the baseline: nothing to merge.")
    out += ["", "## Completion", "", "```", completion_text(records), "```", ""]
    return "\n".join(out)


def write_summary(cfg: Config, records: list[dict[str, Any]], platform: dict[str, Any], cost_usd: float = 0.0, started_at: float | None = None) -> tuple[Path, str]:
    start_branch = ""
    try:
        start_branch = json.loads(paths_for(cfg.root).state_file.read_text()).get("start_branch", "")
    except (OSError, ValueError):
        pass
    text = render(cfg, records, platform, cost_usd, started_at, start_branch)
    path = cfg.root / SUMMARY_NAME
    atomic_write_text(path, text)
    return path, text
