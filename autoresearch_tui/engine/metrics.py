"""Reading metrics from a run's log (DESIGN.md "Metric extraction").

Default forms for a metric NAME (last match in the log wins):
  * ``NAME:   0.997900`` at the start of a line (any padding) — the upstream summary block;
  * ``METRIC NAME=0.997900`` anywhere on a line.
A custom regex with one group replaces both. Lines are split on ``\\n`` and on ``\\r`` so that
progress lines without a newline do not hide a value; bytes that are not UTF-8 are replaced.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
#: read at most this much of the end of a log (a 50 MB single line stays cheap)
MAX_SCAN_BYTES = 32 * 1024 * 1024
#: a metric this large (either sign) is no measurement: a crash, never a best (1e308, -1e308…)
ABSURD = 1e30


@dataclass
class MetricResult:
    value: float | None
    raw: str | None
    reason: str = ""  # why value is None / not finite

    @property
    def ok(self) -> bool:
        return self.value is not None and math.isfinite(self.value) and abs(self.value) < ABSURD


def _patterns(name: str, pattern: str = "") -> list[re.Pattern[str]]:
    if pattern:
        return [re.compile(pattern, re.MULTILINE)]
    n = re.escape(name)
    return [
        re.compile(rf"^[ \t]*{n}[ \t]*:[ \t]*({NUMBER})\b", re.MULTILINE | re.IGNORECASE),
        re.compile(rf"METRIC[ \t]+{n}[ \t]*=[ \t]*({NUMBER})", re.IGNORECASE),
    ]


def read_log_text(path: str | Path, max_bytes: int = MAX_SCAN_BYTES) -> str:
    """The (tail of the) log as text, with ``\\r`` turned into line ends."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                f.seek(size - max_bytes)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def extract(text: str, name: str, pattern: str = "") -> MetricResult:
    best_pos, raw = -1, None
    for rx in _patterns(name, pattern):
        for m in rx.finditer(text):
            if m.start() >= best_pos:
                best_pos, raw = m.start(), m.group(1)
    if raw is None:
        if not pattern:
            loose = list(re.finditer(rf"^[ \t]*{re.escape(name)}[ \t]*[:=][ \t]*(\S+)", text, re.MULTILINE))
            if loose:
                got = loose[-1].group(1)[:40]
                return MetricResult(None, got, f"metric '{name}' printed as {got!r}, which is not a number")
        if pattern:
            return MetricResult(None, None, f"metric pattern {pattern!r} never matched the log")
        return MetricResult(None, None, f"metric '{name}' was never printed (expected '{name}: <number>' or 'METRIC {name}=<number>')")
    try:
        value = float(raw.strip())
    except ValueError:
        return MetricResult(None, raw, f"metric '{name}' printed as {raw!r}, which is not a number")
    if not math.isfinite(value):
        return MetricResult(value, raw, f"metric '{name}' is {raw.strip()} (not finite)")
    if abs(value) >= ABSURD:
        return MetricResult(value, raw, f"metric '{name}' is {raw.strip()} (absurd: beyond ±{ABSURD:g})")
    return MetricResult(value, raw)


def extract_many(text: str, names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in names:
        r = extract(text, n)
        if r.ok:
            out[n] = r.value  # type: ignore[assignment]
    return out


def memory_gb_from(secondary: dict[str, float], text: str) -> float | None:
    """Peak memory the script printed itself (``peak_vram_mb`` / ``memory_gb``), in GB."""
    r = extract(text, "peak_vram_mb")
    if r.ok:
        return r.value / 1024.0  # type: ignore[operator]
    r = extract(text, "memory_gb")
    if r.ok:
        return r.value
    if "peak_vram_mb" in secondary:
        return secondary["peak_vram_mb"] / 1024.0
    return None


def error_tail(text: str, lines: int = 15, max_chars: int = 2000) -> str:
    """The last lines of a log, for crash reasons and the LLM's crash history."""
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    out = "\n".join(tail)
    return out[-max_chars:]


_CRASH_HINTS = [
    (re.compile(r"out of memory|CUDA error: out of memory|OutOfMemoryError|MemoryError", re.I), "out of memory"),
    (re.compile(r"^(\w*Error|\w*Exception): .*", re.M), None),
    (re.compile(r"Traceback \(most recent call last\)"), "python exception"),
]


def crash_hint(text: str) -> str:
    """A short guess of why a run crashed, from its log."""
    tail = text[-20000:]
    for rx, label in _CRASH_HINTS:
        found = list(rx.finditer(tail))
        if found:
            return label or found[-1].group(0)[:200]
    return ""
