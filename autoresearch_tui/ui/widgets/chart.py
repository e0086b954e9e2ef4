"""The metric sparkline, the running best beneath it, and their numbers."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ...fsio import fmt_metric


class MetricChart(Vertical):
    def __init__(self, direction: str = "minimize", **kw: Any) -> None:
        super().__init__(**kw)
        self.direction = direction
        self.values: list[float] = []
        self.best: list[float] = []

    def compose(self) -> ComposeResult:
        yield Static("metric", id="chart-title")
        yield Sparkline([], id="spark-metric")
        yield Sparkline([], id="spark-best")
        yield Static("", id="chart-numbers")

    def set_direction(self, direction: str) -> None:
        self.direction = direction
        fn = min if direction == "minimize" else max
        for s in self.query(Sparkline):
            s.summary_function = fn

    def _append(self, values: list[float], best: list[float], rec: dict[str, Any]) -> None:
        v = rec.get("metric")
        if v is None or rec.get("status") == "crash":
            return
        values.append(float(v))
        pick = min if self.direction == "minimize" else max
        kept = float(v) if rec.get("status") == "keep" else None
        cur = best[-1] if best else None
        nb = kept if cur is None else (pick(cur, kept) if kept is not None else cur)
        best.append(nb if nb is not None else float(v))

    def add(self, rec: dict[str, Any]) -> None:
        # new lists: Sparkline repaints only when it gets a new object
        self.values, self.best = list(self.values), list(self.best)
        self._append(self.values, self.best, rec)
        self._show()

    def load(self, records: list[dict[str, Any]]) -> None:
        values, best = list(self.values), list(self.best)
        for r in records:
            self._append(values, best, r)
        self.values, self.best = values, best
        self._show()

    def _show(self) -> None:
        self.query_one("#spark-metric", Sparkline).data = self.values[-400:]
        self.query_one("#spark-best", Sparkline).data = self.best[-400:]
        if self.values:
            text = f"last {fmt_metric(self.values[-1])} · best {fmt_metric(self.best[-1])} · n {len(self.values)}"
        else:
            text = "no measurement yet"
        self.query_one("#chart-numbers", Static).update(text)
