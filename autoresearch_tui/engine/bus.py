"""The event bus: engine parts emit, subscribers (the TUI's bridge, the headless printer, tests)
receive, always on the engine's asyncio loop.

* `emit` from the loop's own thread delivers at once; from any other thread (git and file work
  runs in threads) it hands the event to the loop with `call_soon_threadsafe`, so subscribers
  never run on a worker thread and events keep their order per thread.
* A subscriber that raises does not stop the loop and is not silenced: the traceback goes to
  the `on_error` hook (the session writes it to `.autoresearch/errors.log` and says so once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from typing import Callable

from .events import Event

log = logging.getLogger("autoresearch_tui.engine")

Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.on_error: Callable[[Subscriber, Event, str], None] | None = None

    def subscribe(self, fn: Subscriber) -> None:
        self._subs.append(fn)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on this loop from now on (called when the session starts running)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def emit(self, ev: Event) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or loop.is_closed():
            self._deliver(ev)
            return
        try:
            loop.call_soon_threadsafe(self._deliver, ev)
        except RuntimeError:  # the loop closed meanwhile: deliver here rather than lose it
            self._deliver(ev)

    def _deliver(self, ev: Event) -> None:
        for fn in list(self._subs):
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop the loop
                tb = traceback.format_exc()
                log.error("subscriber %r raised on %s:\n%s", fn, type(ev).__name__, tb)
                if self.on_error is not None:
                    try:
                        self.on_error(fn, ev, tb)
                    except Exception:  # noqa: BLE001
                        log.exception("the bus's error hook raised")
