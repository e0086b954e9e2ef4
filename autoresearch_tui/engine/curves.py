"""Training curves from the log, and early stopping against the best run's curve.

A **curve** is the loss against the position in the run (0 = start, 1 = the end of the budget),
read from the output as it streams: the upstream shape ``step 00123 (45.2%) | loss: 3.214``
(also in ``\\r`` lines), ``METRIC loss=3.2 step=123``, or `[metric] progress_pattern` with named
groups ``loss`` and one of ``pct``, ``seconds`` or ``step``. Without a percentage or seconds, the
position is the elapsed time over the budget. Curves are kept compactly (at most one point per
1 % of the budget) in ``.autoresearch/curves/<n>.json``, so any two runs compare afterwards.

**Early stopping** (`[research] early_stop`): after a minimum share of the budget, a run whose
loss has been worse than the best run's at the same position by more than ``k`` spreads for a
while — and, at the pace the gap changes, would not catch up by the end — is stopped. The spread at a position is the standard deviation
of the baseline repeats' curves there, never less than a floor (a share of the loss) that stands
in when there is only one curve. It is recorded as discard with the reason; an early-stopped run
is never kept and its curve never becomes the reference.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .policy import pooled_spread

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
UPSTREAM = re.compile(rf"step\s+(?P<step>\d+)\s*\((?P<pct>{NUM})%\).*?\bloss\b\s*[:=]?\s*(?P<loss>{NUM})", re.I)
METRIC_LINE = re.compile(rf"METRIC\s+loss\s*=\s*(?P<loss>{NUM})(?:.*?\bstep\s*=\s*(?P<step>\d+))?", re.I)
GENERIC = re.compile(rf"\bstep\b\s*[:=]?\s*(?P<step>\d+).*?\bloss\b\s*[:=]?\s*(?P<loss>{NUM})", re.I)
EARLY = "stopped early"


@dataclass(frozen=True)
class EarlyStop:
    min_share: float  # no stop before this share of the budget
    k: float  # how many spreads worse
    floor: float  # the least spread, as a share of the best's loss there
    sustain: float  # the share of the budget the gap must last


SETTINGS = {
    "conservative": EarlyStop(min_share=0.5, k=4.0, floor=0.04, sustain=0.1),
    "aggressive": EarlyStop(min_share=0.25, k=2.0, floor=0.015, sustain=0.05),
}


def parse_line(line: str, pattern: re.Pattern[str] | None = None) -> tuple[float | None, float | None, float] | None:
    """(pct 0-1 or None, seconds or None, loss) from one line, else None."""
    for rx in ([pattern] if pattern is not None else []) + [UPSTREAM, METRIC_LINE, GENERIC]:
        m = rx.search(line)
        if not m:
            continue
        g = m.groupdict()
        try:
            loss = float(g["loss"])
        except (TypeError, ValueError, KeyError):
            continue
        if not math.isfinite(loss):
            continue
        pct = float(g["pct"]) / 100 if g.get("pct") else None
        secs = float(g["seconds"]) if g.get("seconds") else None
        return pct, secs, loss
    return None


@dataclass
class Curve:
    """One run's curve, read incrementally from its log."""

    budget_s: float
    pattern: re.Pattern[str] | None = None
    points: list[tuple[float, float]] = field(default_factory=list)  # (position, loss)
    offset: int = 0
    partial: str = ""

    def feed(self, text: str, elapsed_s: float) -> bool:
        """New output (``\\r`` counts as a line end); True when a point was added."""
        text = (self.partial + text).replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self.partial = lines.pop()[-4000:]
        added = False
        for line in lines:
            got = parse_line(line, self.pattern)
            if got is None:
                continue
            pct, secs, loss = got
            pos = pct if pct is not None else (secs / self.budget_s if secs is not None and self.budget_s else elapsed_s / max(self.budget_s, 1e-9))
            added |= self.add(pos, loss)
        return added

    def add(self, pos: float, loss: float) -> bool:
        if self.points and int(pos * 100) == int(self.points[-1][0] * 100):
            self.points[-1] = (pos, loss)  # one point per 1 % of the budget: the latest wins
            return False
        if self.points and pos < self.points[-1][0]:
            return False
        self.points.append((round(pos, 4), loss))
        return True

    def read(self, log: Path, elapsed_s: float) -> bool:
        try:
            with open(log, "rb") as f:
                f.seek(self.offset)
                data = f.read(4 * 1024 * 1024)
        except OSError:
            return False
        self.offset += len(data)
        return self.feed(data.decode("utf-8", errors="replace"), elapsed_s)


def at(points: list[tuple[float, float]], pos: float) -> float | None:
    """The curve's loss at `pos` (linear between points; None outside the curve)."""
    if not points or pos < points[0][0] or pos > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= pos <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (pos - x0) / (x1 - x0)
    return points[-1][1]


def save(path: Path, points: list[tuple[float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"points": points}))


def load(path: Path) -> list[tuple[float, float]]:
    try:
        return [(float(a), float(b)) for a, b in json.loads(path.read_text())["points"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def verdict(live: list[tuple[float, float]], best: list[tuple[float, float]], repeats: list[list[tuple[float, float]]],
            setting: EarlyStop, direction: str = "minimize") -> str:
    """The early-stop reason ('' = go on). The gap must exceed k spreads at the last point and
    at every point of the last `sustain` share, and must not be closing."""
    if not live or not best or live[-1][0] < setting.min_share:
        return ""
    sign = 1 if direction == "minimize" else -1
    pos, loss = live[-1]
    window = [(p, v) for p, v in live if p >= pos - setting.sustain]
    if len(window) < 2 or window[0][0] > pos - setting.sustain * 0.8:
        return ""
    gaps: list[float] = []
    for p, v in window:
        ref = at(best, p)
        if ref is None:
            return ""
        spread = pooled_spread([[y for y in (at(c, p) for c in repeats) if y is not None]])[0] if len(repeats) >= 2 else 0.0
        margin = setting.k * max(spread, setting.floor * abs(ref))
        gap = sign * (v - ref)
        if gap <= margin:
            return ""
        gaps.append(gap)
    # the pace of the gap, over a longer stretch than the window (a few noisy points mislead)
    trend = [(p, sign * (v - r)) for p, v in live if p >= pos - max(0.25, setting.sustain) for r in [at(best, p)] if r is not None]
    xs = [p for p, _ in trend]
    mx, mg = sum(xs) / len(xs), sum(g for _, g in trend) / len(trend)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (g - mg) for x, g in trend) / var if var else 0.0
    if mg + slope * (max(1.0, pos) - mx) <= 0:
        return ""  # closing the gap: at this pace it would catch up by the end (a late bloomer may win)
    ref = at(best, pos)
    return f"{EARLY} at {pos:.0%}: loss {loss:.4g} vs best {ref:.4g} at the same point"
