"""A plain-text plot of a few curves (loss against the share of the budget): each series has its
own mark, so it reads in 16 colours and over any terminal. Neutral ground: standard library only,
used by the engine's diff text and the TUI's curve pane alike."""

from __future__ import annotations

Series = tuple[str, str, list[tuple[float, float]]]  # (label, mark, points)


def plot(series: list[Series], width: int = 60, height: int = 10) -> str:
    """Rows of text: a y axis with the range, the plot, an x axis 0 % … 100 %, and a legend."""
    drawn = [(label, mark, pts) for label, mark, pts in series if pts]
    if not drawn:
        return "no curve yet"
    width, height = max(12, width), max(3, height)
    ys = [y for _, _, pts in drawn for _, y in pts]
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y1 = y0 + 1e-9
    x1 = max(1.0, max(x for _, _, pts in drawn for x, _ in pts))
    label_w = max(len(f"{y1:.4g}"), len(f"{y0:.4g}"))
    cols = width - label_w - 2
    grid = [[" "] * cols for _ in range(height)]
    for _, mark, pts in drawn:  # later series are drawn over earlier ones: the live run last
        for x, y in pts:
            c = min(cols - 1, max(0, round(x / x1 * (cols - 1))))
            r = min(height - 1, max(0, round((y1 - y) / (y1 - y0) * (height - 1))))
            grid[r][c] = mark
    out = []
    for i, row in enumerate(grid):
        label = f"{y1:.4g}" if i == 0 else f"{y0:.4g}" if i == height - 1 else ""
        out.append(f"{label:>{label_w}} │" + "".join(row))
    out.append(" " * label_w + " └" + "─" * cols)
    right = f"{x1:.0%} of the budget"
    out.append(" " * (label_w + 2) + "0%" + right.rjust(cols - 2))
    out.append("  ".join(f"{mark} {label}" for label, mark, _ in drawn))
    return "\n".join(out)
