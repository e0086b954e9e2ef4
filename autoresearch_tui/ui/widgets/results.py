"""The results table: one row per experiment, keyed by iteration, updated in place."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from ...engine.records import RunRecord
from ...fsio import fmt_metric

COLUMNS = [("iter", "#"), ("commit", "commit"), ("metric", "metric"), ("delta", "Δ best"), ("mem", "mem GB"),
           ("status", "status"), ("desc", "description"), ("idea", "idea")]
STATUS_COLOUR = {"keep": "success", "discard": "warning", "crash": "error"}
#: told apart without colour too: in 16 colours success and warning may both become plain white
STATUS_STYLE = {"keep": "bold", "discard": "dim", "crash": "bold"}
#: and by shape, at a glance down the column (the word follows)
STATUS_SYMBOL = {"keep": "✓", "discard": "✗", "crash": "‼"}


class ResultsTable(DataTable):
    #: rows kept in the widget; older experiments stay in results.tsv, the chart and the summary.
    #: (Every row costs a measurement per cell; 10,000 rows would take seconds to show.)
    MAX_ROWS = 2000

    def __init__(self, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.records: dict[str, RunRecord] = {}
        self.total = 0

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def _cells(self, rec: RunRecord) -> dict[str, Any]:
        status = rec.status
        colour = self.app.theme_variables.get(STATUS_COLOUR.get(status, ""), "")
        label = f"{STATUS_SYMBOL.get(status, ' ')} {status}" + (" (you)" if rec.override else "")
        m, d, mem = rec.metric, rec.delta_vs_best, rec.memory_gb
        desc = rec.description
        if status == "crash" and rec.crash_reason:
            desc = f"{desc} — {rec.crash_reason}"
        # Text, not str: a str cell is parsed as markup (and for emoji codes) on every measure
        return {
            "iter": Text(str(rec.iteration)),
            "commit": Text(rec.commit[:7]),
            "metric": Text(fmt_metric(m)),
            "delta": Text((f"{d:+.6f}" if d is not None and not rec.is_baseline else "")
                          + (f" {rec.confidence:+.1f}σ" if rec.confidence is not None else "")
                          + (" !" if rec.flag else "")),
            "mem": Text(f"{mem:.1f}" if mem is not None else "—"),
            "status": Text(label, style=f"{STATUS_STYLE.get(status, 'bold')} {colour}".strip()),
            # a fallback experiment (the offline proposer ran while the model failed): in italics
            "desc": Text(desc[:120], style="italic" if rec.fallback else ""),
            "idea": Text(rec.idea[:40]),
        }

    def upsert(self, rec: RunRecord, scroll: bool = True) -> None:
        key = str(rec.iteration)
        cells = self._cells(rec)
        if key in self.records:
            self.records[key] = rec
            for col, value in cells.items():
                self.update_cell(key, col, value)
        else:
            self.records[key] = rec
            self.total += 1
            self.add_row(*[cells[k] for k, _ in COLUMNS], key=key)
            while self.row_count > self.MAX_ROWS:
                oldest = next(iter(self.records))
                self.records.pop(oldest)
                self.remove_row(oldest)
            self._title()
            if scroll:
                self.move_cursor(row=self.row_count - 1)

    def _title(self) -> None:
        if self.total > self.row_count:
            self.border_title = f"results (latest {self.row_count:,} of {self.total:,}; all in results.tsv)"
        else:
            self.border_title = "results"

    def load(self, records: list[RunRecord]) -> None:
        self.total += max(0, len(records) - self.MAX_ROWS)
        for rec in records[-self.MAX_ROWS:]:
            self.upsert(rec, scroll=False)
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def selected(self) -> RunRecord | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None
        return self.records.get(str(key))
