"""The metric sparkline, the running best beneath it, and their numbers.

The running best is the History's (`History.running_best()`, or the best a `Decision` carries):
this widget draws it, it never decides what the best is."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ...engine.records import History, RunRecord
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

    @staticmethod
    def _append(values: list[float], best: list[float], rec: RunRecord, best_after: float | None) -> None:
        if rec.metric is None or rec.status == "crash":
            return
        values.append(float(rec.metric))
        if best_after is not None:
            best.append(float(best_after))

    def add(self, rec: RunRecord, best: float | None) -> None:
        """One more row; `best` is the History's best after it (`Decision.best.metric`)."""
        # new lists: Sparkline repaints only when it gets a new object
        self.values, self.best = list(self.values), list(self.best)
        self._append(self.values, self.best, rec, best)
        self._show()

    def load(self, history: History) -> None:
        values, best = list(self.values), list(self.best)
        for r, b in zip(history, history.running_best(), strict=True):
            self._append(values, best, r, b)
        self.values, self.best = values, best
        self._show()

    def _show(self) -> None:
        self.query_one("#spark-metric", Sparkline).data = self.values[-400:]
        self.query_one("#spark-best", Sparkline).data = self.best[-400:]
        if self.values:
            text = f"last {fmt_metric(self.values[-1])} · best {fmt_metric(self.best[-1] if self.best else None)} · n {len(self.values)}"
        else:
            text = "no measurement yet"
        self.query_one("#chart-numbers", Static).update(text)
