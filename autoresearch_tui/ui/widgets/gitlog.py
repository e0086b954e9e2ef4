"""The research branch's git log (read by the screen in a thread, shown here)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class GitLogPane(Static):
    def set_log(self, entries: list[tuple[str, str]]) -> None:
        t = Text()
        accent = self.app.theme_variables.get("accent", "")
        for sha, subject in entries:
            t.append(sha, style=accent)
            t.append("  " + subject[:70] + "\n")
        self.update(t if entries else "(no commits yet)")
