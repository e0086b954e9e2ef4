"""A terminal chart of the session, in the style of progress.png: every experiment as a dot,
the rows that set the best as ●, rows kept by the user as ○, the running best as a step line.
Plain text, so it reads on 16 colours. The running best is the History's, never recomputed here."""

from __future__ import annotations

from ..engine.records import RunRecord
from ..fsio import fmt_metric


def render(records: list[RunRecord], running_best: list[float | None], direction: str, width: int = 100, height: int = 20) -> str:
    """`running_best[i]` is the best after `records[i]` (`History.running_best()`)."""
    if len(running_best) != len(records):
        raise ValueError(f"{len(running_best)} running-best values for {len(records)} records")
    pts, steps = [], []
    for r, best in zip(records, running_best, strict=True):
        if r.metric is None or r.status == "crash":
            continue
        mark = "●" if r.sets_best else "○" if r.kept_by_user else "·"
        pts.append((r.iteration, float(r.metric), mark))
        steps.append((r.iteration, best))
    if not pts:
        return "no measurement yet"
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + [b for _, b in steps if b is not None]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y1 = y0 + 1e-9
    if x1 == x0:
        x1 = x0 + 1
    grid = [[" "] * width for _ in range(height)]

    def cell(x: float, y: float) -> tuple[int, int]:
        c = round((x - x0) / (x1 - x0) * (width - 1))
        r = round((y1 - y) / (y1 - y0) * (height - 1))
        return r, c

    prev = None
    for x, b in steps:  # the running best first, points drawn over it
        if b is None:
            continue
        r, c = cell(x, b)
        if prev is not None:
            pr, pc = prev
            for cc in range(pc, c + 1):
                grid[pr][cc] = "─"
            for rr in range(min(pr, r), max(pr, r) + 1):
                grid[rr][c] = "│"
        prev = (r, c)
    for x, y, mark in pts:
        r, c = cell(x, y)
        grid[r][c] = mark
    label_w = 11
    lines = []
    for i, row in enumerate(grid):
        y = y1 - (y1 - y0) * i / (height - 1)
        label = f"{y:.5g}" if i in (0, height // 2, height - 1) else ""
        lines.append(f"{label:>{label_w}} ┤{''.join(row)}")
    lines.append(" " * label_w + " └" + "─" * width)
    lines.append(" " * label_w + f"  #{x0}".ljust(width // 2) + f"#{x1}".rjust(width // 2))
    lines.append("")
    user = "○ kept by you   " if any(mark == "○" for _, _, mark in pts) else ""
    lines.append(f"· experiment   ● kept   {user}─ running best ({'lower' if direction == 'minimize' else 'higher'} is better)   "
                 f"n={len(pts)}, best {fmt_metric(running_best[-1] if running_best else None)}")
    return "\n".join(lines)
