"""Turning a finished run into a record: metric, secondary metrics, memory, crash reason, and
the keep/discard decision (direction-aware, beyond min_delta)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .. import secrets
from ..fsio import clean_text
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


# out of memory, as the frameworks say it (the last one found in the log's tail wins)
_OOM = [
    (re.compile(r"(?:torch\.(?:cuda\.)?)?OutOfMemoryError: CUDA out of memory\.?[^\n]*|CUDA out of memory[^\n]*|"
                r"CUDA error: out of memory"), "CUDA"),
    (re.compile(r"MPS backend out of memory[^\n]*"), "MPS"),
    (re.compile(r"^\s*MemoryError\b[^\n]*", re.M), "MemoryError"),
    (re.compile(r"\bOutOfMemoryError\b[^\n]*|\bout of memory\b[^\n]*", re.I), ""),
]
OOM_KILLED = 137  # 128 + SIGKILL: how the kernel's OOM killer ends a run


def oom_in_log(text: str) -> str:
    """'out of memory (…)' when the log's tail says the run ran out of memory, else ''."""
    tail = text[-20000:]
    for rx, where in _OOM:
        found = list(rx.finditer(tail))
        if found:
            line = found[-1].group(0).strip()[:160]
            return f"out of memory ({where}: {line})" if where and where != line else f"out of memory ({line})"
    return ""


def crash_kind(reason: str, log_tail: str, killed: bool = False) -> str:
    """timeout | oom | trivial | other. A run we killed (timeout, the user, a stop) did not run out
    of memory, whatever its log says."""
    text = reason + "\n" + log_tail
    if "timed out" in reason:
        return "timeout"
    if not killed and ("out of memory" in text.lower() or "OutOfMemoryError" in text or oom_in_log(log_tail)):
        return "oom"
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
    tail = secrets.redact(clean_text(metrics.error_tail(text)))
    reason = ""
    if outcome.killed and kill_reason:
        reason = kill_reason
    elif outcome.reason and (outcome.killed or outcome.exit_code is None or outcome.exit_code != 0):
        reason = outcome.reason
    elif outcome.timed_out:
        reason = f"timed out after {outcome.duration_s:.0f} s and was killed"
    elif outcome.exit_code is None:
        reason = "the run ended without an exit status (the app was not there to see it)"
        if res.ok:
            reason = ""
    elif outcome.exit_code != 0:
        hint = oom_in_log(text) or metrics.crash_hint(text)
        if not hint and outcome.exit_code == OOM_KILLED:
            # SIGKILL with nothing else in the log: the kernel's OOM killer (we did not kill it)
            hint = "out of memory (killed by SIGKILL with no other error: the kernel's OOM killer)"
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
        reason = secrets.redact(clean_text(reason))
        rec["crash_reason"] = reason
        rec["crash_kind"] = crash_kind(reason, tail, killed=outcome.killed)
        rec["error_tail"] = tail
    return rec
