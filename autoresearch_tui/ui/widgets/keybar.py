"""The key bar: the active bindings on one line, like Textual's Footer, but one cheap repaint
when they change instead of rebuilding a widget per key (which costs ~100-200 ms per screen
switch or focus change on a small machine, and is what a key press waits for)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

KEEP = {"help", "quit"}  # binding ids the bar never drops for width


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._entries: list[tuple[Text, bool]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self._changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Any) -> None:
        v = self.app.theme_variables
        key_style = f"bold {v.get('accent', '')}"
        dim = "dim"
        entries: list[tuple[Text, bool]] = []
        seen = set()
        for _node, binding, enabled, _tip in screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = self.app.get_key_display(binding)
            e = Text()
            e.append(f" {key} ", style=key_style if enabled else dim)
            e.append(f"{binding.description} ", style="" if enabled else dim)
            entries.append((e, binding.id in KEEP))
        if [(e.plain, e.spans, k) for e, k in entries] != [(e.plain, e.spans, k) for e, k in self._entries]:
            self._entries = entries
            self.refresh()

    def render(self) -> Text:
        # Help and Quit stay whatever the width: the others are dropped from the right first
        width = self.size.width or 200
        tail = Text(" ^p palette", style="dim")
        budget = width - tail.cell_len - sum(e.cell_len for e, keep in self._entries if keep)
        t = Text(no_wrap=True, overflow="ellipsis")
        for e, keep in self._entries:
            if keep:
                t.append_text(e)
            elif e.cell_len <= budget:
                t.append_text(e)
                budget -= e.cell_len
            else:
                budget = -1  # keep the order: nothing after a dropped key
        if t.cell_len + tail.cell_len <= width:
            t.append_text(tail)
        return t
