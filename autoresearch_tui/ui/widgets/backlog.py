"""The backlog: queued, running and tried ideas, and the input that queues new ones."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

ICONS = {"queued": "○", "running": "▶", "tried": "✓", "skipped": "–"}


class BacklogPane(Vertical):
    def compose(self) -> ComposeResult:
        with VerticalScroll(id="backlog-scroll"):
            yield Static("(no ideas yet)", id="backlog-list")
        yield Input(placeholder="an idea for the next iteration (Enter queues it)", id="idea-input")

    def set_ideas(self, ideas: list[dict[str, Any]]) -> None:
        t = Text()
        for i in ideas:
            t.append(f"{ICONS.get(i['status'], '?')} ", style="bold")
            t.append(i["text"][:80])
            if i.get("outcome"):
                t.append(f" — {i['outcome']}", style="dim")
            t.append("\n")
        self.query_one("#backlog-list", Static).update(t if ideas else "(no ideas yet: press i and type one)")
