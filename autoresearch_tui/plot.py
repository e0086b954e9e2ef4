"""`summary --plot`: progress.png in the style of upstream's analysis notebook — every
experiment as a point, kept ones highlighted, the running best as a step line.
matplotlib is an optional extra (`pip install 'autoresearch-tui[plot]'`)."""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .engine.records import History
from .errors import UsageError


def write_plot(cfg: Config, history: History, path: Path | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("summary --plot needs matplotlib: pip install 'autoresearch-tui[plot]'") from None
    path = path or cfg.root / "progress.png"
    p = series(history)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    ax.scatter(p["xs"], p["ys"], s=14, color="#9aa5b1", label="experiment", zorder=2)
    ax.scatter(p["kept_x"], p["kept_y"], s=36, color="#2a9d8f", edgecolor="black", linewidth=0.5, label="kept (the best then)", zorder=3)
    if p["user_x"]:
        ax.scatter(p["user_x"], p["user_y"], s=36, facecolor="none", edgecolor="#2a9d8f", linewidth=1.2, label="kept by you (re-measured after)", zorder=3)
    if p["best_x"]:
        ax.step(p["best_x"], p["best_y"], where="post", color="#e76f51", linewidth=2, label="running best", zorder=4)
    for x in p["crash_x"]:
        ax.axvline(x, color="#e63946", alpha=0.15, linewidth=1)
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{cfg.metric.name} ({'lower' if cfg.metric.direction == 'minimize' else 'higher'} is better)")
    ax.set_title(plot_title(cfg, history))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def series(history: History) -> dict[str, list]:
    """What the figure draws: every measured experiment, the rows that set the best (kept by the
    loop, the baseline, re-measurements), the rows kept by the user, crashes, and the running best
    exactly as the History gives it."""
    out: dict[str, list] = {k: [] for k in ("xs", "ys", "kept_x", "kept_y", "user_x", "user_y", "crash_x", "best_x", "best_y")}
    for r, best in zip(history, history.running_best(), strict=True):
        n = r.iteration
        if r.status == "crash" or r.metric is None:
            out["crash_x"].append(n)
            continue
        out["xs"].append(n)
        out["ys"].append(r.metric)
        if r.sets_best:
            out["kept_x"].append(n)
            out["kept_y"].append(r.metric)
        elif r.kept_by_user:
            out["user_x"].append(n)
            out["user_y"].append(r.metric)
        if best is not None:
            out["best_x"].append(n)
            out["best_y"].append(best)
    return out


def plot_title(cfg: Config, history: History) -> str:
    """The figure's title: the counts are the summary's (experiments only, no baseline or re-measurements)."""
    c = history.counts()
    return f"{cfg.branch}: {len(history.experiments())} experiments, {c['keep']} kept, {c['crash']} crashed (red lines)"
