"""Small file helpers shared by the engine and the UI: one way to write a file atomically,
one way to append a durable line, one way to print a metric.

Neutral ground: imports only the standard library, so both the engine and the UI may use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old file or the new one, never half:
    a temporary file beside it, fsynced, renamed over the target, the directory fsynced."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_append(path: Path, text: str) -> None:
    """Append `text` and fsync before returning (one row of results: it must survive a crash)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def fmt_metric(value: Any, missing: str = "—") -> str:
    """A metric as the tool shows it everywhere: 6 decimals, or `missing` when there is none."""
    if value is None:
        return missing
    try:
        return f"{float(value):.6f}"
    except (TypeError, ValueError):
        return missing



_ESC = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_].*?(?:\x07|\x1b\\|$)|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]", re.S)
_CTL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """`text` without terminal control sequences (CSI, OSC, DCS…, other C0/C1 controls; newlines
    and tabs stay): what a run or a model wrote never drives the user's terminal, a results row or
    a commit message."""
    return _CTL.sub("", _ESC.sub("", str(text)))
