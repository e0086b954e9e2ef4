"""Errors that end the program: exit code 2 with a one-line message (the user can fix it), or
exit code 1 with the traceback in a crash log (a bug)."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from .engine.paths import STATE_DIR


class UsageError(Exception):
    """Bad usage or state the user can fix; `str()` is the whole message."""


class EngineFailure(Exception):
    """The engine died of an unexpected error; `crash_log` has the traceback."""

    def __init__(self, summary: str, crash_log: str):
        super().__init__(summary)
        self.crash_log = crash_log


def write_crash(exc: BaseException, root: Path | None = None) -> str:
    """Write the traceback to `.autoresearch/crash-<time>.log` (under `root`, else the current
    directory; the temp dir as a last resort). Returns where it went."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    here = Path(root) if root is not None else Path(".")
    for base in (here / STATE_DIR, Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            base.mkdir(exist_ok=True)
            path = base / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "(could not be written)"
