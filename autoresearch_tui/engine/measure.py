"""Turning a finished run into a record: metric, secondary metrics, memory, crash reason, and
the keep/discard decision (direction-aware, beyond min_delta)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import metrics
from .runner import RunOutcome

TRIVIAL_CRASH = ("SyntaxError", "NameError", "ImportError", "ModuleNotFoundError", "AttributeError",
                 "IndentationError", "TypeError", "shape", "size mismatch", "UnboundLocalError", "KeyError")


def hash_files(root: Path, paths: list[str]) -> dict[str, str]:
    out = {}
    for p in paths:
        try:
            out[p] = hashlib.sha256((root / p).read_bytes()).hexdigest()
        except OSError:
            out[p] = "missing"
    return out


def delta(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None:
        return None
    return value - ref


def crash_kind(reason: str, log_tail: str) -> str:
    text = reason + "\n" + log_tail
    if "out of memory" in text.lower() or "OutOfMemoryError" in text:
        return "oom"
    if "timed out" in reason:
        return "timeout"
    if any(t in text for t in TRIVIAL_CRASH):
        return "trivial"
    return "other"


def evaluate_run(
    log_path: Path,
    outcome: RunOutcome,
    metric_name: str,
    pattern: str,
    secondary_names: list[str],
    kill_reason: str = "",
) -> dict[str, Any]:
    """Measure a finished run. Returns record fields; `crash_reason` set means crash."""
    # the last match wins, so a match in the tail beats anything earlier: read the last 1 MB
    # first and the (bounded) rest only if the metric is not there. A 50 MB flood of output
    # then costs milliseconds, not seconds of regex holding the GIL of the UI's process.
    text = metrics.read_log_text(log_path, max_bytes=1024 * 1024)
    res = metrics.extract(text, metric_name, pattern)
    if res.value is None and res.raw is None:
        full = metrics.read_log_text(log_path)
        if len(full) > len(text):
            res = metrics.extract(full, metric_name, pattern)
        del full
    secondary = metrics.extract_many(text, secondary_names)
    mem = metrics.memory_gb_from(secondary, text)
    mem_source = "log"
    if mem is None and outcome.peak_rss_gb > 0:
        mem, mem_source = outcome.peak_rss_gb, "rss"
    tail = metrics.error_tail(text)
    reason = ""
    if outcome.killed and kill_reason:
        reason = kill_reason
    elif outcome.timed_out:
        reason = f"timed out after {outcome.duration_s:.0f} s and was killed"
    elif outcome.exit_code is None:
        reason = "the run ended without an exit status (the app was not there to see it)"
        if res.ok:
            reason = ""
    elif outcome.exit_code != 0:
        hint = metrics.crash_hint(text)
        reason = f"exit code {outcome.exit_code}" + (f": {hint}" if hint else "")
    if not reason and not res.ok:
        reason = res.reason
    rec: dict[str, Any] = {
        "metric": res.value if (res.ok and not reason) else None,
        "secondary": secondary,
        "memory_gb": round(mem, 3) if mem is not None else None,
        "memory_source": mem_source if mem is not None else None,
        "exit_code": outcome.exit_code,
        "timed_out": outcome.timed_out,
        "killed": outcome.killed,
        "duration_s": round(outcome.duration_s, 3),
        "survivors": outcome.survivors,
    }
    if reason:
        rec["crash_reason"] = reason
        rec["crash_kind"] = crash_kind(reason, tail)
        rec["error_tail"] = tail
    return rec
