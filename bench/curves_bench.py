"""Early stopping on curves whose end is known in advance: GPU time saved, and would-be keeps
stopped (the guarantee: 0 at "conservative"). Calls the engine's rule (`curves.verdict`) on
synthetic runs, point by point as a live run would feed it.

Workloads (loss against the share of the budget x, 100 points, Gaussian noise per point):
* the best: L(x) = 1.5 + 1.5 * exp(-4x)
* losers: the best times (1 + d), d in [5 %, 40 %] — worse all the way
* late bloomers: worse early by up to 25 %, the gap closing linearly to a win of 1–5 % at the end
* winners: better all the way by 1–5 %
* neutral: the best plus noise
Three baseline repeats give the spread where asked.
"""

from __future__ import annotations

import math
import random

from autoresearch_tui.engine import curves

Row = tuple[str, float, str, str, bool, str]


def _best(x: float) -> float:
    return 1.5 + 1.5 * math.exp(-4 * x)


def _run(kind: str, rng: random.Random, noise: float) -> list[tuple[float, float]]:
    d = rng.uniform(0.05, 0.4)
    early, win = rng.uniform(0.05, 0.25), rng.uniform(0.01, 0.05)
    pts = []
    for i in range(1, 101):
        x = i / 100
        b = _best(x)
        if kind == "loser":
            y = b * (1 + d)
        elif kind == "late":
            y = b * (1 + early * (1 - x) - win * x)
        elif kind == "winner":
            y = b * (1 - win)
        else:
            y = b
        pts.append((x, y + rng.gauss(0, noise)))
    return pts


def simulate(setting: str, runs: int = 200, noise: float = 0.01, seed: int = 7, repeats: int = 3) -> dict[str, float]:
    rng = random.Random(seed)
    best = [(i / 100, _best(i / 100)) for i in range(1, 101)]
    reps = [[(x, y + rng.gauss(0, noise)) for x, y in best] for _ in range(repeats)] if repeats >= 2 else []
    es = curves.SETTINGS[setting]
    used = full = 0.0
    keeps_stopped = keeps = losers = losers_stopped = 0
    for k in range(runs):
        kind = ("loser", "late", "winner", "neutral")[k % 4]
        pts = _run(kind, rng, noise)
        final_better = pts[-1][1] < best[-1][1] - 2 * noise
        stop_at = 1.0
        for j in range(1, len(pts) + 1, 2):  # a live run feeds its points as they come
            if curves.verdict(pts[:j], best, reps, es):
                stop_at = pts[j - 1][0]
                break
        used += stop_at
        full += 1.0
        if final_better:
            keeps += 1
            keeps_stopped += stop_at < 1.0
        if kind == "loser":
            losers += 1
            losers_stopped += stop_at < 1.0
    return {"saved": 1 - used / full, "keeps": keeps, "keeps_stopped": keeps_stopped, "losers": losers, "losers_stopped": losers_stopped}


def early_stop(runs: int = 400) -> list[Row]:
    out = []
    for setting in ("conservative", "aggressive"):
        r = simulate(setting, runs=runs)
        goal = "0 would-be keeps stopped" if setting == "conservative" else "reported"
        ok = r["keeps_stopped"] == 0 if setting == "conservative" else True
        out.append((f"early stop '{setting}': GPU time saved ({runs} synthetic runs, 1/4 losers)", r["saved"] * 100, "%", goal, ok,
                    f"would-be keeps stopped {r['keeps_stopped']} of {r['keeps']}; losers stopped {r['losers_stopped']} of {r['losers']}"))
    return out
