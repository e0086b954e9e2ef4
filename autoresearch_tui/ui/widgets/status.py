"""The status bar: branch, phase badge, iteration, best vs baseline, run progress, time, cost."""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import ProgressBar

from ...engine.events import ModelHealth
from ...engine.records import RunRecord
from ...fsio import fmt_metric


class StatusText(Widget):
    """Two lines of text that repaint without asking for a new layout (it ticks every second)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.text = Text()

    def set(self, text: Text) -> None:
        if text.plain != self.text.plain or text.spans != self.text.spans:
            self.text = text
            self.refresh()

    def render(self) -> Text:
        # each line cut to the width: a wrapped first line would push the run line off
        width = max(1, self.size.width)
        lines = []
        for line in self.text.split("\n", allow_blank=True)[:2]:
            line.truncate(width, overflow="ellipsis")
            lines.append(line)
        return Text("\n").join(lines)

PHASE_COLOURS = {
    "baseline": "secondary", "proposing": "secondary", "committing": "secondary", "running": "primary",
    "measuring": "primary", "kept": "success", "discarded": "warning", "crashed": "error",
    "paused": "accent", "stopping": "warning", "stopped": "panel", "starting": "panel",
}


def fmt_duration(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


#: a run that has written nothing to its log for this long gets "no output for N s" on its line
QUIET_AFTER_S = 30


def fmt_quiet(s: float) -> str:
    """How long a run has been silent: seconds up to 99, then h:mm:ss."""
    s = max(0, int(s))
    return f"{s} s" if s < 100 else fmt_duration(s)


class StatusBar(Horizontal):
    """Two lines: session facts on the first, the running experiment on the second."""

    def __init__(self, clock: Callable[[], float] = time.time, **kw: Any) -> None:
        super().__init__(**kw)
        self.clock = clock
        self.branch = ""
        self.phase = "starting"
        self.detail = ""
        self.iteration = 0
        self.max_iterations = 0
        self.best: float | None = None
        self.baseline: float | None = None
        self.direction = "minimize"
        self.metric = ""
        self.session_start = clock()
        self.run_start: float | None = None
        self.last_output: float | None = None  # when the run's log last grew (the log pane says)
        self.budget = 0.0
        self.timeout = 0.0
        self.cost = 0.0
        self.tokens = 0
        self.platform = ""
        self.paused = False
        self.session_done = 0
        self.noise = 0.0
        self.health: ModelHealth | None = None  # the model's (the llm proposer's)

    def compose(self) -> ComposeResult:
        yield StatusText(id="status-text")
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="run-progress")

    def saw_output(self, when: float) -> None:
        self.last_output = when

    def set_best(self, best: RunRecord | None, baseline: RunRecord | None) -> None:
        """The History's best and baseline (what `Decision` / `HistoryLoaded` carry)."""
        self.best = best.metric if best is not None else None
        self.baseline = baseline.metric if baseline is not None else None

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh_status)
        self.refresh_status()

    def _badge(self) -> Text:
        name = "paused" if self.paused and self.phase not in ("running", "measuring", "baseline") else self.phase
        colour = self.app.theme_variables.get(PHASE_COLOURS.get(name, "panel"), "")
        fg = self.app.theme_variables.get("background", "")
        return Text(f" {name.upper()} ", style=f"bold {fg} on {colour}" if colour else "reverse")

    def refresh_status(self) -> None:
        now = self.clock()
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append_text(self._badge())
        t.append(f" {self.branch} ", style="bold")
        t.append(f"· #{self.iteration} ")
        if self.max_iterations:
            t.append(f"({self.session_done}/{self.max_iterations}) ")
        if self.best is not None:
            t.append(f"· best {fmt_metric(self.best)} ")
            if self.baseline:
                d = (self.best - self.baseline) / abs(self.baseline) * 100
                good = (d < 0) == (self.direction == "minimize") and d != 0
                colour = self.app.theme_variables.get("success" if good else "foreground", "")
                t.append(f"{d:+.2f}% ", style=f"bold {colour}")
        t.append(f"· {fmt_duration(now - self.session_start)} ")
        if self.cost or self.tokens:
            t.append(f"· ${self.cost:.2f} {self.tokens} tok ")
        if self.health is not None:
            text, bad = health_text(self.health, now)
            style = f"bold {self.app.theme_variables.get('warning', '')}".strip() if bad else ""
            t.append(f"· {text} ", style=style)
        t.append("\n")
        over = False
        if self.run_start is not None and self.budget:
            el = now - self.run_start
            over = el > self.budget
            t.append(f"run {fmt_duration(el)} " if over else f"run {fmt_duration(el)} / {fmt_duration(self.budget)} ")
            quiet = now - max(self.run_start, self.last_output or 0.0)
            if quiet >= QUIET_AFTER_S:
                # a sign of life (or of none): the run has printed nothing for a while
                t.append(f"· no output for {fmt_quiet(quiet)} ", style=f"bold {self.app.theme_variables.get('warning', '')}".strip())
            if over:
                # past the budget a full progress bar says nothing: say what happens next
                t.append(f"· over budget — killed at {fmt_duration(self.timeout)} if still running ",
                         style=f"bold {self.app.theme_variables.get('error', '')}".strip())
            else:
                t.append(f"(kill {fmt_duration(self.timeout)}) ")
        if self.detail:
            t.append(self.detail[:60] + " ", style="italic")
        if self.baseline is not None:
            t.append(f"· baseline {fmt_metric(self.baseline)} ", style="dim")
        if self.noise:
            t.append(f"· noise σ {self.noise:.4g} ", style="dim")
        if self.platform:
            t.append(f"· {self.platform}", style="dim")
        self.query_one("#status-text", StatusText).set(t)
        bar = self.query_one("#run-progress", ProgressBar)
        if bar.display == over:
            bar.display = not over
        total, progress = (self.budget, round(min(self.budget, now - self.run_start))) if (self.run_start is not None and self.budget) else (100, 0)
        if (bar.total, bar.progress) != (total, progress):
            bar.update(total=total, progress=progress)


def health_text(h: ModelHealth, now: float) -> tuple[str, bool]:
    """The model's health in a few words, and whether it is in trouble: "model ok · fallback 0%",
    "model ✗ 3 failed (last: …) · again in 40 s · fallback 50%", "model retrying: …"."""
    share = f" · fallback {h.fallbacks / h.proposals * 100:.0f}%" if h.proposals else ""
    if h.activity:
        return f"model retrying: {h.activity[:60]}{share}", True
    if h.failed_in_row:
        again = f" · again in {h.retry_at - now:.0f} s" if h.retry_at > now else ""
        return f"model ✗ {h.failed_in_row} failed (last: {h.last_error[:50]}){again}{share}", True
    return f"model ok{share}", bool(h.fallbacks and h.proposals and h.fallbacks * 2 > h.proposals)
