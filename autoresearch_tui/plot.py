"""`summary --plot`: progress.png in the style of upstream's analysis notebook — every
experiment as a point, kept ones highlighted, the running best as a step line.
matplotlib is an optional extra (`pip install 'autoresearch-tui[plot]'`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config
from .errors import UsageError


def write_plot(cfg: Config, records: list[dict[str, Any]], path: Path | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("summary --plot needs matplotlib: pip install 'autoresearch-tui[plot]'") from None
    path = path or cfg.root / "progress.png"
    pick = min if cfg.metric.direction == "minimize" else max
    xs, ys, kx, ky, cx, bx, by = [], [], [], [], [], [], []
    best = None
    for r in records:
        n = r.get("iteration", len(xs))
        m = r.get("metric")
        if r.get("status") == "crash" or m is None:
            cx.append(n)
            continue
        xs.append(n)
        ys.append(m)
        if r.get("status") == "keep":
            kx.append(n)
            ky.append(m)
            best = m if best is None else pick(best, m)
        if best is not None:
            bx.append(n)
            by.append(best)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    ax.scatter(xs, ys, s=14, color="#9aa5b1", label="experiment", zorder=2)
    ax.scatter(kx, ky, s=36, color="#2a9d8f", edgecolor="black", linewidth=0.5, label="kept", zorder=3)
    if bx:
        ax.step(bx, by, where="post", color="#e76f51", linewidth=2, label="running best", zorder=4)
    for x in cx:
        ax.axvline(x, color="#e63946", alpha=0.15, linewidth=1)
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{cfg.metric.name} ({'lower' if cfg.metric.direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{cfg.branch}: {len(records)} experiments, {len(kx)} kept, {len(cx)} crashed (red lines)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
