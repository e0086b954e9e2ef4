"""The offline search on landscapes whose optimum is known: evaluations until the branch is
within 0.5% of the optimum, for the `mutate` proposer and for a plain coordinate search run on
the same landscapes (same seeds, same decision rule, same cap).

Each landscape is a small `train.py` (its module-level constants, as the proposer reads them)
plus the metric as a function of those constants (minimize; optimum 1.0). Optima lie 1–3 steps
of ×1.25 away from the start, in random directions (one draw per seed):

* separable — four constants, f = 1 + Σ wᵢ·ln(xᵢ/xᵢ*)², plus one constant with no effect;
* coupled — the best LR moves with BATCH_SIZE (ln LR* = A + ρ·ln BATCH, ρ = 0.5 or 1, the
  square-root and linear scaling rules): after each move of the batch size the LR's best value
  is elsewhere; plus two separable constants and one with no effect;
* aliased — LR_BASE and LR_MULT act only as their product (`lr = LR_BASE * LR_MULT`), plus two
  separable constants;
* noisy — the separable landscape with Gaussian noise σ = 0.002 on every run; keeps are decided
  by the engine's `confirm` policy (`policy.judge` on a `History`), and every run counts
  (confirmations and re-measurements of the best included).

Without noise a change is kept when it is strictly better. The plain coordinate search goes
round the constants in file order, trying ×1.25 then ÷1.25 (integers rounded), and stops when a
whole round brings nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoresearch_tui.engine.policy import judge  # noqa: E402
from autoresearch_tui.engine.records import History, RunRecord  # noqa: E402
from autoresearch_tui.proposers.base import Edit, Proposal, ProposalContext, ProposalError, Proposer  # noqa: E402
from autoresearch_tui.proposers.edits import apply_edits  # noqa: E402
from autoresearch_tui.proposers.mutate import MutateProposer, find_constants, fmt  # noqa: E402

Row = tuple[str, float, str, str, bool, str]
STEP = 1.25
TOL = 1.005  # within 0.5% of the optimum (1.0)
CAP = 150  # evaluations at most per search


@dataclass
class Landscape:
    name: str
    source: str
    f: Callable[[dict[str, Any]], float]
    noise: float = 0.0
    coupled: bool = False


def _sep(x: float, opt: float, w: float) -> float:
    return w * math.log(x / opt) ** 2


def _target(rng: random.Random, start: float, integer: bool = False) -> float:
    k = rng.choice([-3, -2, -1, 1, 2, 3])
    v = start * STEP ** k
    return float(round(v)) if integer else v


def landscapes(seed: int) -> list[Landscape]:
    rng = random.Random(seed)
    out = []
    # separable: 4 constants that matter and one that does not
    opt = {"LR": _target(rng, 0.01), "WIDTH": _target(rng, 64, True), "WEIGHT_DECAY": _target(rng, 0.1), "WARMUP": _target(rng, 20, True)}
    w = {k: rng.uniform(0.15, 0.6) for k in opt}
    src = "LR = 0.01\nWIDTH = 64\nWEIGHT_DECAY = 0.1\nWARMUP = 20\nLOG_EVERY = 10\nUNUSED_SCALE = 3.0\n"
    sep = lambda v, opt=opt, w=w: 1 + sum(_sep(v[k], opt[k], w[k]) for k in opt)  # noqa: E731
    out.append(Landscape("separable", src, sep))
    # coupled: the best LR moves with the batch size (ln LR* = A + rho ln BATCH, rho 0.5 or 1)
    lr0, b0, ln_step = 0.01, 64, math.log(STEP)
    rho = rng.choice([0.5, 1.0])
    bs = rng.choice([-2, 2] if rho == 0.5 else [-3, -2, -1, 1, 2, 3])  # BATCH_SIZE's optimum, in steps of x1.25
    a0 = rng.choice([-2, -1, 1, 2])  # LR's optimum (in steps) at the start's batch size
    wl, wb = rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.8)
    o2 = {"WEIGHT_DECAY": _target(rng, 0.1), "WARMUP": _target(rng, 20, True)}
    w2 = {k: rng.uniform(0.15, 0.6) for k in o2}

    def coupled(v: dict[str, Any], o2=o2, w2=w2, a0=a0, rho=rho, bs=bs, wl=wl, wb=wb) -> float:
        a, b = math.log(v["LR"] / lr0) / ln_step, math.log(v["BATCH_SIZE"] / b0) / ln_step
        return 1 + ln_step ** 2 * (wl * (a - a0 - rho * b) ** 2 + wb * (b - bs) ** 2) + sum(_sep(v[k], o2[k], w2[k]) for k in o2)

    src = "LR = 0.01\nBATCH_SIZE = 64\nWEIGHT_DECAY = 0.1\nWARMUP = 20\nUNUSED_SCALE = 3.0\n"
    out.append(Landscape("coupled", src, coupled, coupled=True))
    # aliased: two constants that only act as their product
    o3 = {"lr": _target(rng, 0.01), "WIDTH": _target(rng, 64, True), "WARMUP": _target(rng, 20, True)}
    w3 = {k: rng.uniform(0.15, 0.6) for k in o3}

    def aliased(v: dict[str, Any], o3=o3, w3=w3) -> float:
        vals = {"lr": v["LR_BASE"] * v["LR_MULT"], "WIDTH": v["WIDTH"], "WARMUP": v["WARMUP"]}
        return 1 + sum(_sep(vals[k], o3[k], w3[k]) for k in o3)

    src = "LR_BASE = 0.01\nLR_MULT = 1.0\nWIDTH = 64\nWARMUP = 20\n\nlr = LR_BASE * LR_MULT\n"
    out.append(Landscape("aliased", src, aliased))
    # noisy: the separable landscape, measured with noise
    out.append(Landscape("noisy", out[0].source, sep, noise=0.002))
    return out


def _values(text: str) -> dict[str, Any]:
    return {c.name: c.value for c in find_constants("train.py", text, skip=None)}


class CoordinateSearch(Proposer):
    """The plain coordinate search the benchmark compares with (see the module's docstring)."""

    name = "coordinate"

    def __init__(self) -> None:
        self.i = 0  # constant in turn
        self.tries = 0  # moves tried on it (0, 1)
        self.idle = 0  # constants in a row without a keep
        self.last: tuple[str, Any] | None = None

    async def propose(self, ctx: ProposalContext) -> Proposal:
        # the constants the mutate proposer would tune (seeds, logging, paths aside)
        consts = [c for c in find_constants("train.py", ctx.files["train.py"]) if isinstance(c.value, (int, float))]
        last = ctx.history[-1] if ctx.history else None
        if self.last is not None and last is not None:
            if last.status == "keep":
                self.i, self.tries, self.idle = self.i + 1, 0, 0
            elif self.tries == 1:
                self.i, self.tries, self.idle = self.i + 1, 0, self.idle + 1
            else:
                self.tries = 1
        while True:
            if self.idle >= len(consts):
                raise ProposalError("coordinate search: a whole round brought nothing", exhausted=True)
            c = consts[self.i % len(consts)]
            new = c.value * STEP if self.tries == 0 else c.value / STEP
            if isinstance(c.value, int):
                new = max(1, round(new))
                new = new if new != c.value else c.value + (1 if self.tries == 0 else -1)
            if new > 0:
                break
            self.i, self.tries, self.idle = self.i + 1, 0, self.idle + 1
        self.last = (c.name, new)
        edit = Edit("train.py", c.line, c.line.replace(c.seg, fmt(new), 1))
        return Proposal(f"{c.name} {fmt(c.value)} -> {fmt(new)}", [edit], mutation={"name": c.name, "old": fmt(c.value), "new": fmt(new)})


@dataclass
class Search:
    evals: int = 0
    reached: int | None = None  # evaluations when the branch first stood within TOL of the optimum
    history: list[RunRecord] = field(default_factory=list)


async def _search(land: Landscape, proposer: Proposer, seed: int) -> Search:
    rng = random.Random(seed * 7919 + 17)
    text = land.source
    truth = {"c0": land.f(_values(text))}
    h = History(direction="minimize")
    out = Search()

    def measure(commit: str) -> float:
        out.evals += 1
        return truth[commit] + (rng.gauss(0, land.noise) if land.noise else 0.0)

    for _ in range(3 if land.noise else 1):
        h.add(RunRecord(iteration=len(h), status="keep", metric=measure("c0"), commit="c0", is_baseline=True, description="baseline"))
    while out.evals < CAP:
        best = h.best()
        assert best is not None
        if truth[best.commit] <= TOL:
            out.reached = out.evals
            break
        ctx = ProposalContext(iteration=len(h), root=ROOT, files={"train.py": text}, read_only={}, goal="", metric="m",
                              direction="minimize", history=list(h.records), best=best)
        try:
            p = await proposer.propose(ctx)
        except ProposalError:
            break
        new_text = apply_edits({"train.py": text}, p.edits, ROOT, ["train.py"], [])["train.py"]
        commit = f"c{len(h)}"
        truth[commit] = land.f(_values(new_text))
        first = measure(commit)
        if land.noise:
            v = await judge(first, h.measurements(best.commit), "minimize", "confirm", 0.0, 2.5, h.noise_estimate,
                            again=lambda c=commit: _async(measure(c)), best_again=lambda c=best.commit: _async(measure(c)))
            status, runs, best_runs = v.status, v.runs, v.best_runs
        else:
            status, runs, best_runs = ("keep" if first < best.metric else "discard"), [first], []
        rec = RunRecord(iteration=len(h), status=status, metric=sum(runs) / len(runs), commit=commit, description=p.description,
                        mutation=p.mutation, runs=list(runs) if len(runs) > 1 else [])
        if best_runs:
            rec.best_runs, rec.best_commit = list(best_runs), best.commit
        h.add(rec)
        if status == "keep":
            text = new_text
    out.history = h.records
    return out


async def _async(x: float) -> float:
    return x


def run_search(land_name: str, which: str, seed: int) -> Search:
    land = next(x for x in landscapes(seed) if x.name == land_name)
    proposer = MutateProposer() if which == "mutate" else CoordinateSearch()
    return asyncio.run(_search(land, proposer, seed))


def search_speed(seeds: int = 100) -> list[Row]:
    rows: list[Row] = []
    for land in ("separable", "coupled", "aliased", "noisy"):
        res = {w: [run_search(land, w, s).reached for s in range(seeds)] for w in ("mutate", "coordinate")}
        capped = {w: [CAP if r is None else r for r in rs] for w, rs in res.items()}  # never got there: the cap
        m, c = statistics.mean(capped["mutate"]), statistics.mean(capped["coordinate"])
        both = [(a, b) for a, b in zip(res["mutate"], res["coordinate"], strict=True) if a is not None and b is not None]
        coupled = land == "coupled"
        ok = m < c if coupled else m <= c
        rows.append((f"offline search, {land}: evaluations to within 0.5% of the optimum (mean of {seeds} seeds)", m, "evals",
                     "< coordinate search" if coupled else "<= coordinate search", ok,
                     f"coordinate search {c:.1f} (x{m / c:.2f}); medians {statistics.median(capped['mutate']):g} vs "
                     f"{statistics.median(capped['coordinate']):g}; not within {CAP}: mutate {res['mutate'].count(None)}, coordinate "
                     f"{res['coordinate'].count(None)}; seeds both reached: {statistics.mean(a for a, _ in both):.1f} vs "
                     f"{statistics.mean(b for _, b in both):.1f}"))
    return rows


if __name__ == "__main__":
    for r in search_speed(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        print(r)
