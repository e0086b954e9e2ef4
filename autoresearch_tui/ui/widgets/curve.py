"""The curve pane: the followed run's loss (●) against the best run's (·) and the baseline's (○)
at the same share of the budget — marks, not colours, tell them apart (16 colours, any font)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from ... import textplot
from ...engine.events import CurveUpdated


class CurvePane(Widget):
    DEFAULT_CSS = """
    CurvePane { height: 9; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.last: CurveUpdated | None = None
        self.by_iteration: dict[int, CurveUpdated] = {}
        self.follow: int | None = None  # the iteration shown

    def update_curve(self, e: CurveUpdated) -> None:
        self.by_iteration[e.iteration] = e
        if len(self.by_iteration) > 16:
            self.by_iteration.pop(next(iter(self.by_iteration)))
        if self.follow is None or e.iteration == self.follow:
            self.last = e
            self.refresh()

    def show(self, iteration: int | None) -> None:
        self.follow = iteration
        self.last = self.by_iteration.get(iteration) if iteration is not None else None
        self.refresh()

    def series(self, e: CurveUpdated) -> list[textplot.Series]:
        best = f"best #{e.best_iteration}" if e.best_iteration is not None else "best"
        return [("baseline", "○", e.baseline), (best, "·", e.best), (f"#{e.iteration}", "●", e.points)]

    def text(self, width: int, height: int) -> str:
        e = self.last
        if e is None:
            return "no curve yet: a run that prints 'step N (P%) | loss: X' draws one here"
        if not e.points:
            return e.note or "no curve yet"
        body = textplot.plot(self.series(e), width, max(3, height - (2 if e.note else 1)))
        return body + ("\n" + e.note if e.note else "")

    def render(self) -> Text:
        return Text(self.text(self.size.width, self.size.height), no_wrap=True, overflow="ellipsis")
