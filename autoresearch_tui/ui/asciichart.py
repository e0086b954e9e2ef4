"""A terminal chart of the session, in the style of progress.png: every experiment as a dot,
kept ones as ●, the running best as a step line. Plain text, so it reads on 16 colours."""

from __future__ import annotations

from typing import Any


def render(records: list[dict[str, Any]], direction: str, width: int = 100, height: int = 20) -> str:
    pts = [(r.get("iteration", i), float(r["metric"]), r.get("status") == "keep")
           for i, r in enumerate(records) if r.get("metric") is not None and r.get("status") != "crash"]
    if not pts:
        return "no measurement yet"
    pick = min if direction == "minimize" else max
    best, steps = None, []
    for x, y, kept in pts:
        if kept:
            best = y if best is None else pick(best, y)
        steps.append((x, best))
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
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
    for x, y, kept in pts:
        r, c = cell(x, y)
        grid[r][c] = "●" if kept else "·"
    label_w = 11
    lines = []
    for i, row in enumerate(grid):
        y = y1 - (y1 - y0) * i / (height - 1)
        label = f"{y:.5g}" if i in (0, height // 2, height - 1) else ""
        lines.append(f"{label:>{label_w}} ┤{''.join(row)}")
    lines.append(" " * label_w + " └" + "─" * width)
    lines.append(" " * label_w + f"  #{x0}".ljust(width // 2) + f"#{x1}".rjust(width // 2))
    lines.append("")
    lines.append(f"· experiment   ● kept   ─ running best ({'lower' if direction == 'minimize' else 'higher'} is better)   "
                 f"n={len(pts)}, best {pick(ys):.6f}")
    return "\n".join(lines)
