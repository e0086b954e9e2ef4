"""The slots pane: one line per slot when several experiments run at once — its GPU(s), the
experiment, elapsed / budget as a bar, the last metric (or loss) value seen in its log, and its
state. The selected slot (number keys, tab) is the one the log pane follows and `x` kills."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.widget import Widget

from ...engine.events import SlotView
from ...engine.metrics import extract
from .status import fmt_duration

TAIL_BYTES = 16 * 1024
_LOSS = re.compile(r"\bloss\b[ \t]*[:=]?[ \t]*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", re.IGNORECASE)
BAR = 10


def last_value(path: str, metric: str) -> str:
    """The last value of the metric, else of a loss, in the tail of a log ('' = none yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, Path(path).stat().st_size - TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    m = extract(text, metric)
    if m.ok:
        return f"{metric} {m.value:.4g}"
    losses = _LOSS.findall(text)
    return f"loss {float(losses[-1]):.4g}" if losses else ""


class SlotsPane(Widget):
    DEFAULT_CSS = """
    SlotsPane { height: auto; max-height: 9; }
    """

    def __init__(self, metric: str, clock: Callable[[], float] = time.time, **kw: Any) -> None:
        super().__init__(**kw)
        self.metric = metric
        self.clock = clock
        self.slots: list[SlotView] = []
        self.selected = 0
        self.values: dict[int, str] = {}  # slot -> last value seen in its log

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def set_slots(self, slots: list[SlotView]) -> None:
        self.slots = list(slots)
        self.display = len(self.slots) > 1
        for s in self.slots:
            if not s.started_at:
                self.values.pop(s.index, None)
        self.refresh(layout=True)

    def select(self, index: int) -> None:
        if 0 <= index < len(self.slots):
            self.selected = index
            self.refresh()

    @property
    def current(self) -> SlotView | None:
        return self.slots[self.selected] if 0 <= self.selected < len(self.slots) else None

    def running(self) -> int:
        return sum(1 for s in self.slots if s.started_at and s.state != "queued")

    def _tick(self) -> None:
        if self.display:
            self.refresh()
            self._read_values([(s.index, s.log_path) for s in self.slots if s.started_at and s.log_path])

    @work(thread=True, exclusive=True, group="slot-values")
    def _read_values(self, logs: list[tuple[int, str]]) -> None:
        values = {i: last_value(p, self.metric) for i, p in logs}
        try:
            self.app.call_from_thread(self._set_values, values)
        except RuntimeError:
            pass  # closed meanwhile

    def _set_values(self, values: dict[int, str]) -> None:
        self.values.update(values)
        self.refresh()

    def line(self, s: SlotView, now: float) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        mark = "▶" if s.index == self.selected else " "
        t.append(f"{mark}{s.index} ", style="bold" if s.index == self.selected else "")
        gpu = ("GPU " + ",".join(s.gpus)) if s.gpus else "CPU"
        t.append(f"{gpu:<7.7} ", style="dim")
        if s.started_at:
            el = now - s.started_at
            filled = min(BAR, int(BAR * el / s.budget_s)) if s.budget_s else 0
            over = s.budget_s and el > s.budget_s
            t.append(f"#{s.iteration:<4} ")
            t.append("█" * filled + "░" * (BAR - filled), style="bold red" if over else "")
            t.append(f" {fmt_duration(el)[2:]}/{fmt_duration(s.budget_s)[2:]} ")
            value = self.values.get(s.index, "")
            if value:
                t.append(f"{value} ", style="bold")
        elif s.iteration and s.state != "idle":
            t.append(f"#{s.iteration:<4} ")
        t.append(f"{s.state:<9} ", style="italic")
        t.append(s.description)
        return t

    def render(self) -> Text:
        now = self.clock()
        return Text("\n").join(self.line(s, now) for s in self.slots)
