"""The live log of the running experiment: incremental, bounded, follows the bottom unless
the user scrolled up (then it counts what waits)."""

from __future__ import annotations

import os
import time
from typing import Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from ..tailer import LogTailer


class LogPane(Vertical):
    MAX_LINES = 5000

    def __init__(self, poll_s: float = 0.1, clock: Callable[[], float] = time.time, **kw) -> None:
        super().__init__(**kw)
        self.tailer: LogTailer | None = None
        self.poll_s = poll_s
        self.clock = clock
        #: told when the run's log grows (the status bar counts the silence)
        self.on_output: Callable[[float], None] | None = None
        self._log_size = -1
        self.waiting = 0
        self.skipped = 0
        self._progress = ""
        self._notes = ""

    def compose(self) -> ComposeResult:
        yield Static("no run yet", id="log-title")
        yield Log(max_lines=self.MAX_LINES, highlight=False, id="log")
        yield Static("", id="log-progress")
        yield Static("", id="log-waiting")

    def on_mount(self) -> None:
        self.set_interval(self.poll_s, self.poll)

    def follow(self, path: str, title: str) -> None:
        self.poll()  # the last words of the previous run
        self.tailer = LogTailer(path)
        self._log_size = -1
        log = self.query_one(Log)
        self.skipped = 0
        log.write_lines(["", f"──── {title} ────"])
        self.query_one("#log-title", Static).update(title)
        self._progress = ""
        self.query_one("#log-progress", Static).update("")

    def _watch_size(self, path: str) -> None:
        """Any growth of the log is a sign of life, a `\\r` progress line too, and also while a
        dialog hides the pane."""
        try:
            size = os.stat(path).st_size
        except OSError:
            return
        if size != self._log_size:
            self._log_size = size
            if self.on_output is not None:
                self.on_output(self.clock())

    def poll(self) -> None:
        if self.tailer is None:
            return
        self._watch_size(self.tailer.path)
        if self.app.screen is not self.screen:
            # a dialog is open: repainting the log under it would re-render the whole
            # background every tick; the tailer keeps its offset and catches up afterwards
            return
        chunk = self.tailer.poll()
        log = self.query_one(Log)
        if chunk.reset:
            log.write_line("──── the log was truncated or re-created; reading from its start ────")
        if chunk.skipped_bytes or chunk.skipped_lines:
            if not self.skipped:
                log.write_line("…… output faster than anyone can read: showing the newest lines (full log on disk) ……")
            self.skipped += chunk.skipped_lines + chunk.skipped_bytes // 80
        if chunk.lines:
            at_end = log.is_vertical_scroll_end
            log.write_lines(chunk.lines)
            if not at_end:
                self.waiting += len(chunk.lines)
        if chunk.progress is not None and chunk.progress != self._progress:
            # only on change: a Static update asks for a new layout, which repaints the panes
            self._progress = chunk.progress
            self.query_one("#log-progress", Static).update(chunk.progress)
        if log.is_vertical_scroll_end:
            self.waiting = 0
        notes = []
        if self.waiting:
            notes.append(f"↓ {self.waiting} new lines below (End: follow)")
        if self.skipped:
            notes.append(f"~{self.skipped:,} lines not shown (the whole log is in {self.tailer.path})")
        text = " · ".join(notes)
        if text != self._notes:
            self._notes = text
            self.query_one("#log-waiting", Static).update(text)
