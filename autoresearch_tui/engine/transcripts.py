"""Transcripts of model requests: every prompt and raw answer, and what became of it.

One Markdown file per answer (or per request that got none) under `.autoresearch/proposals/`,
redacted like every error text (key values from the environment, key shapes). The record of
the experiment an answer led to lists its transcripts (`transcripts`: the rejected attempts
before it too); the `proposal_rejected` / `proposal_failed` events in runs.jsonl name theirs.
The TUI's diff view reads the answers back (`read`).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text
from ..proposers.base import Exchange
from ..proposers.redact import redact
from .records import RunRecord

DIR = "proposals"
_HEADER = re.compile(r"^- ([a-z ]+): (.*)$")


def _fence(*texts: str) -> str:
    longest = max((len(m.group(0)) for t in texts for m in re.finditer(r"~{3,}", t)), default=0)
    return "~" * max(4, longest + 1)


def render(ex: Exchange, iteration: int, attempt: int, outcome: str, reason: str, tokens: int, cost: float) -> str:
    answer = ex.answer if ex.answer else "(no answer)"
    parts = [f"{m.get('role', '?')}\n{m.get('content', '')}" for m in ex.prompt]
    fence = _fence(answer, *parts)
    lines = [
        f"# Model answer: {outcome}",
        "",
        f"- model: {ex.model}",
        f"- experiment: #{iteration} (attempt {attempt})",
        f"- at: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- outcome: {outcome}",
        f"- reason: {reason or '—'}",
        f"- tokens: {tokens}",
        f"- cost usd: {cost:.6f}",
        "",
        "## Answer",
        "",
        fence + "text",
        answer,
        fence,
    ]
    for m in ex.prompt:
        lines += ["", f"## Prompt: {m.get('role', '?')}", "", fence + "text", str(m.get("content", "")), fence]
    return redact("\n".join(lines) + "\n")


class Transcripts:
    def __init__(self, state_dir: Path, root: Path):
        self.dir = state_dir / DIR
        self.root = root
        self._seq: int | None = None
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            if self._seq is None:
                nums = [int(p.name[:6]) for p in self.dir.glob("[0-9]*.md") if p.name[:6].isdigit()] if self.dir.is_dir() else []
                self._seq = max(nums, default=0)
            self._seq += 1
            return self._seq

    def write(self, ex: Exchange, iteration: int, attempt: int, outcome: str, reason: str = "", tokens: int = 0,
              cost: float = 0.0) -> str:
        """(blocking) Save one exchange; returns its path relative to the repository."""
        self.dir.mkdir(parents=True, exist_ok=True)
        word = re.sub(r"[^a-z]+", "-", outcome.lower()).strip("-") or "answer"
        path = self.dir / f"{self._next():06d}-{iteration:05d}-{word}.md"
        atomic_write_text(path, render(ex, iteration, attempt, outcome, reason, tokens, cost))
        return str(path.relative_to(self.root))


def read(path: Path) -> dict[str, Any]:
    """A transcript's facts (model, experiment, outcome, reason, …) and its `answer`."""
    out: dict[str, Any] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return {"answer": f"(cannot be read: {e.strerror})", "outcome": "?"}
    lines = text.split("\n")
    i = 0
    while i < len(lines) and not lines[i].startswith("## "):
        m = _HEADER.match(lines[i])
        if m:
            out[m.group(1)] = m.group(2)
        i += 1
    answer: list[str] = []
    if i < len(lines) and lines[i] == "## Answer":
        j = i + 1
        while j < len(lines) and not lines[j].startswith("~~~~"):
            j += 1
        fence = lines[j][: len(lines[j]) - len(lines[j].lstrip("~"))] if j < len(lines) else "~~~~"
        j += 1
        while j < len(lines) and lines[j] != fence:
            answer.append(lines[j])
            j += 1
    out["answer"] = "\n".join(answer)
    return out


def proposal_facts(rec: RunRecord) -> list[str]:
    """How an experiment was proposed, for its diff view: the proposer, the model's description
    and hypothesis, and its answers (the `a` key shows them)."""
    if not rec.is_experiment:
        return []
    out = []
    if rec.fallback:
        out.append(f"proposed by: {rec.proposer} — {rec.fallback}")
    elif rec.proposer:
        out.append(f"proposed by: {rec.proposer}" + (f" (answer {rec.attempts}: after {rec.attempts - 1} rejected)"
                                                     if rec.attempts > 1 else ""))
    if rec.attempts:
        out.append(f"the model's description: {rec.description}")
    if rec.hypothesis:
        out.append(f"hypothesis: {rec.hypothesis}")
    if rec.transcripts:
        out.append(f"model answers: {len(rec.transcripts)} (a shows them; saved in {Path(rec.transcripts[0]).parent}/)")
    return out


def answers_text(root: Path, rec: RunRecord) -> str:
    """The raw answers in an experiment's transcripts, oldest first, each with what became of it."""
    if not rec.transcripts:
        how = "the offline proposer" if rec.proposer.startswith("mutate") else (rec.proposer or "the proposer")
        return f"#{rec.iteration} has no model answers: it came from {how}."
    parts = []
    for k, rel in enumerate(rec.transcripts, 1):
        t = read(root / rel)
        reason = t.get("reason", "—")
        head = f"──── answer {k} of {len(rec.transcripts)}: {t.get('outcome', '?')}" + (f" — {reason}" if reason != "—" else "")
        parts.append(f"{head}\n({rel}; {t.get('model', '?')}, {t.get('at', '?')})\n\n{t.get('answer', '')}")
    return "\n\n".join(parts) + "\n"
