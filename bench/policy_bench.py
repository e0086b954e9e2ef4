"""Keep decisions on a noisy workload whose truth is known: the engine's own decision code
(`policy.judge`, `History.noise_estimate` / `measurements`) fed with synthetic measurements.

A session: the baseline (true value 1.0, minimize) measured 3 times, then 30 experiments. Each
experiment's true effect on the branch it starts from: no effect (60%), worse by 1–6 σ (15%),
better by 3–6 σ (25%, uniform); every run adds Gaussian noise σ = 0.01. A keep moves the branch
(and its true value) to the experiment. Counted per policy over all sessions: false keeps (a kept
experiment whose true effect is none or worse) per 100 decisions, the share of real improvements
(≥ 3 σ) kept (and of those between 3 and 4 σ), runs per decision (confirmations and
re-measurements of the best included), and sessions whose final best is truly worse than the
baseline.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoresearch_tui.config import MetricConfig  # noqa: E402
from autoresearch_tui.engine.policy import judge  # noqa: E402
from autoresearch_tui.engine.records import History, RunRecord  # noqa: E402

Row = tuple[str, float, str, str, bool, str]
SIGMA = 0.01
BASELINE_RUNS = 3
EXPERIMENTS = 30


def _effect(rng: random.Random) -> float:
    """The true improvement of one experiment, in units of sigma (positive = better)."""
    u = rng.random()
    if u < 0.60:
        return 0.0
    if u < 0.75:
        return -rng.uniform(1, 6)
    return rng.uniform(3, 6)


async def _session(rng: random.Random, policy: str, noise_k: float, tally: dict[str, float]) -> None:
    draw = lambda mu: rng.gauss(mu, SIGMA)  # noqa: E731
    h = History(direction="minimize")
    truth = {"c0": 1.0}
    for i in range(BASELINE_RUNS):
        h.add(RunRecord(iteration=i, status="keep", metric=draw(1.0), commit="c0", is_baseline=True))
    tally["runs"] += BASELINE_RUNS
    for i in range(BASELINE_RUNS, BASELINE_RUNS + EXPERIMENTS):
        best = h.best()
        assert best is not None
        t_best = truth[best.commit]
        effect = _effect(rng)
        t_cand = truth[f"c{i}"] = t_best - effect * SIGMA

        async def again(mu: float = t_cand) -> float:
            return draw(mu)

        async def best_again(mu: float = t_best) -> float:
            return draw(mu)

        v = await judge(draw(t_cand), h.measurements(best.commit), "minimize", policy, 0.0, noise_k, h.noise_estimate, again, best_again)
        rec = RunRecord(iteration=i, status=v.status, metric=sum(v.runs) / len(v.runs), commit=f"c{i}",
                        runs=list(v.runs) if len(v.runs) > 1 else [])
        if v.best_runs:
            rec.best_runs, rec.best_commit = list(v.best_runs), best.commit
        h.add(rec)
        kept = v.status == "keep"
        tally["decisions"] += 1
        tally["runs"] += len(v.runs) + len(v.best_runs)
        tally["false"] += kept and effect <= 0
        if effect >= 3:
            tally["real"] += 1
            tally["real_kept"] += kept
            if effect < 4:
                tally["real34"] += 1
                tally["real34_kept"] += kept
    final = h.best()
    tally["worse_end"] += final is not None and truth[final.commit] > 1.0


def simulate(policy: str, sessions: int, noise_k: float, seed: int = 0) -> dict[str, float]:
    keys = ("decisions", "runs", "false", "real", "real_kept", "real34", "real34_kept", "worse_end")
    tally = dict.fromkeys(keys, 0.0)

    async def main() -> None:
        for s in range(sessions):
            await _session(random.Random(seed * 1_000_003 + s), policy, noise_k, tally)

    asyncio.run(main())
    tally["sessions"] = sessions
    return tally


def keep_decisions(sessions: int = 1000) -> list[Row]:
    noise_k = MetricConfig().noise_k
    rows: list[Row] = []
    for policy in ("strict", "margin", "confirm"):
        t = simulate(policy, sessions, noise_k)
        false100 = 100 * t["false"] / t["decisions"]
        kept = 100 * t["real_kept"] / t["real"]
        kept34 = 100 * t["real34_kept"] / t["real34"]
        where = f"{sessions} sessions x {EXPERIMENTS} experiments, baseline x{BASELINE_RUNS}, noise_k {noise_k:g}"
        judged = policy != "strict"
        rows.append((f"keep policy {policy}: false keeps per 100 decisions", false100, "", "<= 1" if judged else "(contrast)",
                     false100 <= 1 or not judged,
                     f"{where}; {t['runs'] / t['decisions']:.2f} runs per decision; final best truly worse than the baseline in "
                     f"{int(t['worse_end'])} of {sessions} sessions"))
        rows.append((f"keep policy {policy}: real improvements >= 3 sigma kept", kept, "%", ">= 90%" if judged else "(contrast)",
                     kept >= 90 or not judged, f"3-4 sigma: {kept34:.1f}% of {int(t['real34'])}; all: {int(t['real_kept'])} of {int(t['real'])}"))
    return rows


if __name__ == "__main__":
    for r in keep_decisions(int(sys.argv[1]) if len(sys.argv) > 1 else 200):
        print(r)
