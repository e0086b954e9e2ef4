"""The bridge: engine events (plain dataclasses) become Textual messages."""

from __future__ import annotations

from textual.message import Message

from ..engine.events import Event


class EngineEvent(Message):
    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
