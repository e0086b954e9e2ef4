"""Incremental reading of a run's log by byte offset, with bounded work per call.

* complete lines come back as text (ANSI escapes removed; for a line containing `\\r` only the
  text after the last `\\r` is kept, which is what a terminal would show);
* the unfinished last line (a `\\r` progress bar) is returned separately as `progress`;
* when the writer is far ahead (a flood), the reader jumps to the tail and reports how many
  bytes it skipped instead of falling behind for ever;
* a truncated or re-created file is noticed and read from the start.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(line: str) -> str:
    if "\r" in line:
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]
    return CONTROL.sub("", ANSI.sub("", line))


@dataclass
class Chunk:
    lines: list[str] = field(default_factory=list)
    progress: str | None = None  # None: unchanged
    skipped_bytes: int = 0
    skipped_lines: int = 0
    reset: bool = False


class LogTailer:
    def __init__(self, path: str, max_read: int = 512 * 1024, max_line: int = 2000, max_lines: int = 120):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.pending = b""
        self.max_read = max_read
        self.max_line = max_line
        self.max_lines = max_lines  # per poll: nobody reads 8,000 lines in 0.1 s; show the newest
        self.total_lines = 0

    def poll(self) -> Chunk:
        out = Chunk()
        try:
            st = os.stat(self.path)
        except OSError:
            return out
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self.offset, self.pending, out.reset = 0, b"", True
        self.inode = st.st_ino
        size = st.st_size
        if size <= self.offset:
            return out
        if size - self.offset > 4 * self.max_read:
            # a flood: show the latest output, say what was skipped
            new_offset = size - self.max_read
            out.skipped_bytes = new_offset - self.offset + len(self.pending)
            self.offset, self.pending = new_offset, b""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(min(self.max_read, size - self.offset))
        except OSError:
            return out
        self.offset += len(data)
        data = self.pending + data
        if out.skipped_bytes:
            nl = data.find(b"\n")  # drop the partial first line after a jump
            data = data[nl + 1 :] if nl >= 0 else b""
        parts = data.split(b"\n")
        self.pending = parts.pop()
        if len(self.pending) > 64 * 1024:
            self.pending = self.pending[-64 * 1024 :]
        self.total_lines += len(parts)
        if len(parts) > self.max_lines:
            out.skipped_lines = len(parts) - self.max_lines
            parts = parts[-self.max_lines :]
        for raw in parts:
            text = clean(raw.decode("utf-8", errors="replace"))
            if len(text) > self.max_line:
                text = text[: self.max_line] + " …"
            out.lines.append(text)
        tail = self.pending.decode("utf-8", errors="replace")
        out.progress = clean(tail)[-self.max_line :] if tail else ""
        return out
