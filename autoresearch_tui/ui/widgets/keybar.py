"""The key bar: the active bindings on one line, like Textual's Footer, but one cheap repaint
when they change instead of rebuilding a widget per key (which costs ~100-200 ms per screen
switch or focus change on a small machine, and is what a key press waits for)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget


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
        self._text = Text()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self._changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Any) -> None:
        v = self.app.theme_variables
        key_style = f"bold {v.get('accent', '')}"
        dim = "dim"
        t = Text(no_wrap=True, overflow="ellipsis")
        seen = set()
        for _node, binding, enabled, _tip in screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = self.app.get_key_display(binding)
            t.append(f" {key} ", style=key_style if enabled else dim)
            t.append(f"{binding.description} ", style="" if enabled else dim)
        t.append(" ^p palette", style=dim)
        if t.plain != self._text.plain or t.spans != self._text.spans:
            self._text = t
            self.refresh()

    def render(self) -> Text:
        return self._text
