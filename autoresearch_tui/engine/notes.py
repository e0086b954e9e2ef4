"""`autoresearch.md`: the session notes (readable by a person and by the LLM) and the backlog.

The `## Backlog` section is the truth for queued ideas: the user may edit it by hand, typed ideas
are appended at once. Markers: `[ ]` queued, `[>]` running, `[x]` tried, `[-]` skipped.
The file is not tracked by git (it is listed in .git/info/exclude).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text, fmt_metric
from .records import History

NOTES_NAME = "autoresearch.md"
_ITEM = re.compile(r"^\s*[-*]\s*(?:\[([ >xX\-])\]\s*)?(.*\S)\s*$")
_MARK = {" ": "queued", ">": "running", "x": "tried", "X": "tried", "-": "skipped"}
_SYMBOL = {"queued": " ", "running": ">", "tried": "x", "skipped": "-"}
SEP = " — "


@dataclass
class Idea:
    text: str
    status: str = "queued"
    outcome: str = ""

    def line(self) -> str:
        tail = f"{SEP}{self.outcome}" if self.outcome else ""
        return f"- [{_SYMBOL[self.status]}] {self.text}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "status": self.status, "outcome": self.outcome}


def clean_idea(text: str) -> str:
    return " ".join(str(text).split())[:500]


def parse_backlog(text: str) -> list[Idea]:
    ideas: list[Idea] = []
    in_section = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_section = line[3:].strip().lower().startswith("backlog")
            continue
        if not in_section:
            continue
        m = _ITEM.match(line)
        if not m:
            continue
        mark, body = m.group(1) or " ", m.group(2)
        status = _MARK.get(mark, "queued")
        outcome = ""
        if status in ("tried", "skipped", "running") and SEP in body:
            body, outcome = body.split(SEP, 1)
        ideas.append(Idea(clean_idea(body), status, outcome.strip()))
    return ideas


def _backlog_block(ideas: list[Idea]) -> str:
    items = "".join(i.line() + "\n" for i in ideas) or "(empty: type ideas with `i` in the app, or add `- [ ] idea` lines here)\n"
    return "## Backlog\n\n" + items + "\n"


class Notes:
    def __init__(self, root: Path):
        self.lock = threading.RLock()
        self.path = Path(root) / NOTES_NAME

    def read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def ideas(self) -> list[Idea]:
        return parse_backlog(self.read_text())

    # Read-modify-write of the backlog happens in worker threads (the user's idea, the loop's
    # marks, the notes): one lock, so that none of them loses another's change.
    def add(self, text: str) -> list[Idea]:
        with self.lock:
            ideas = self.ideas()
            ideas.append(Idea(text))
            self.write_backlog(ideas)
            return ideas

    def mark(self, text: str, status: str, outcome: str) -> list[Idea]:
        """Set the status of the first queued or running idea with this text."""
        with self.lock:
            ideas = self.ideas()
            for i in ideas:
                if i.text == text and i.status in ("queued", "running"):
                    i.status, i.outcome = status, outcome
                    break
            self.write_backlog(ideas)
            return ideas

    def rewrite(self, body_before_backlog: str, body_after: str) -> None:
        with self.lock:
            self.write(body_before_backlog, self.ideas(), body_after)

    def write_backlog(self, ideas: list[Idea]) -> None:
        """Replace the Backlog section only (the rest of the file stays as it is)."""
        text = self.read_text()
        block = _backlog_block(ideas)
        lines = text.splitlines(keepends=True)
        start = next((k for k, ln in enumerate(lines) if ln.startswith("## ") and ln[3:].strip().lower().startswith("backlog")), None)
        if start is None:
            text = (text.rstrip("\n") + "\n\n" if text.strip() else "# Autoresearch\n\n") + block
        else:
            end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
            text = "".join(lines[:start]) + block + "".join(lines[end:])
        atomic_write_text(self.path, text)

    def write(self, body_before_backlog: str, ideas: list[Idea], body_after: str) -> None:
        atomic_write_text(self.path, body_before_backlog.rstrip("\n") + "\n\n" + _backlog_block(ideas) + body_after.lstrip("\n"))


def render_notes(cfg: Any, history: History, platform: dict[str, Any]) -> tuple[str, str]:
    """The notes around the backlog: (before, after). Baseline, best and counts from `history`."""
    r, m = cfg.research, cfg.metric
    before = [
        f"# Autoresearch: {r.goal or m.name}",
        "",
        "_Written by autoresearch-tui; the Backlog section is yours to edit. Everything here is "
        "re-generated from results.tsv and .autoresearch/runs.jsonl._",
        "",
        "## Objective",
        "",
        r.goal or f"{m.direction} {m.name}",
        "",
        "## Metric",
        "",
        f"`{m.name}`, {m.direction} (lower is better)" if m.direction == "minimize" else f"`{m.name}`, maximize (higher is better)",
        f"- extraction: {'regex ' + repr(m.pattern) if m.pattern else f'last `{m.name}: <number>` or `METRIC {m.name}=<number>` line of the log'}",
        f"- keep policy: {m.keep_policy} (min_delta {m.min_delta:g}"
        + (f", noise_k {m.noise_k:g}, baseline runs {m.baseline_runs})" if m.keep_policy != "strict" else ")"),
        "",
        "## Command",
        "",
        f"`{r.command}` (budget {r.time_budget_s:g} s in AUTORESEARCH_TIME_BUDGET, killed after {r.effective_timeout:g} s)",
        "",
        "## Comparison protocol",
        "",
        f"Fixed: the time budget, the evaluator ({', '.join(r.read_only) or 'none'}), the data. "
        f"Platform: {platform.get('summary', 'unknown')}.",
        "",
        "## Files in scope",
        "",
        *[f"- `{f}`" for f in r.files_in_scope],
        "",
        "## Off limits",
        "",
        *([f"- `{f}` (read-only, hash-checked before and after every run)" for f in r.read_only] or ["- (none)"]),
        "",
        "## Constraints",
        "",
        "- one change per experiment; no new dependencies",
        "",
        "## Guard",
        "",
        f"`{r.guard_command}`" if r.guard_command else "none",
    ]
    runs = history.experiments()
    c = history.counts()
    (base, nb), (best, n) = history.baseline_reference(), history.reference()
    runs_of = lambda k: f" (mean of {k} runs)" if k > 1 else ""  # noqa: E731
    if base is not None and not history.beats_baseline():
        best_text = f"no better than the baseline (the branch measures {fmt_metric(best)}{runs_of(n)})"
    else:
        best_text = f"best {fmt_metric(best)}{runs_of(n)}"
    keeps = [x for x in runs if x.status == "keep"]
    discards = [x for x in runs if x.status == "discard"]
    crashes = [x for x in runs if x.status == "crash"]
    after = [
        "## What's been tried",
        "",
        f"Baseline {fmt_metric(base)}{runs_of(nb)} → {best_text} "
        f"after {len(runs)} experiments ({c['keep']} keep / {c['discard']} discard / {c['crash']} crash).",
        "",
        "### Key wins",
        "",
        *([f"- #{x.iteration} {x.description} → {fmt_metric(x.metric)}" + (" (kept by you)" if x.kept_by_user else "")
           for x in keeps] or ["- (none yet)"]),
        "",
        "### Dead ends (latest 15)",
        "",
        *([f"- #{x.iteration} {x.description} → {fmt_metric(x.metric)}" for x in discards[-15:]] or ["- (none yet)"]),
        "",
        "### Crashes (latest 10)",
        "",
        *([f"- #{x.iteration} {x.description}: {x.crash_reason[:160]}" for x in crashes[-10:]] or ["- (none)"]),
        "",
    ]
    return "\n".join(before) + "\n", "\n".join(after)
