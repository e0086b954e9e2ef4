"""The keep decision, honest about noise.

* **noise** (`History.noise_estimate`): the pooled standard deviation of every repeated
  measurement of the same code — the baseline's repeats, a candidate's confirmation runs, the
  best's re-measurements: s² = Σ (x − mean of its commit)² / Σ (runs of the commit − 1), with
  df = Σ (runs − 1) degrees of freedom. It assumes one noise level for every configuration.
* **reference** (`History.reference`): the mean of every measurement of the best commit,
  never one run of it.
* **margin**: what the mean of the candidate's m runs must beat the reference's n runs by:
  max(min_delta, t · s · √(1/m + 1/n)), where t is Student's t quantile with df degrees of
  freedom at the one-sided level that `noise_k` standard errors have under a normal law
  (noise_k = 2.5: 0.62%). With few samples t is large (df = 2: t = 8.9 for noise_k 2.5), so a
  spread that came out small by chance cannot make the margin small: that is the conservative
  start; t falls to noise_k as measurements pile up.
* **policies**: `strict` (upstream: better than the reference by more than min_delta);
  `margin` (one run, better by more than the margin; a candidate better by more than LOW
  standard errors against a best measured fewer than MARGIN_REF times — a kept single run is
  a lucky one — re-measures the best first); `confirm` (better by more than the margin is kept; a candidate better than
  the reference by more than LOW standard errors but not by the margin is run again, up to
  MAX_RUNS runs, and the best is re-measured too while it has no more measurements than the
  candidate). Every new run goes into the noise estimate, and the candidate is decided again
  after each one, on the means.
* **verdicts** say what happened: "worse" (beyond the margin), "within noise", "better but
  within noise" (margin), "better but not confirmed" (confirm, after its runs), "better
  beyond noise" / "confirmed better" (keeps).
* **simplicity**: equal within the margin while removing more lines than it adds ⇒ keep; a keep
  that adds many lines for less than twice the margin is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Awaitable, Callable, Iterable, Sequence

COMPLEX_LINES = 20
LOW = 0.5  # confirm: at most this many standard errors better after a run is not worth another run
MAX_RUNS = 4  # confirm: the candidate's runs at most (the first and three confirmations)
MARGIN_REF = 4


def pooled_spread(groups: Iterable[Sequence[float]]) -> tuple[float, int]:
    """(pooled standard deviation, degrees of freedom) of groups of repeated measurements; each
    group is one piece of code measured several times. (0.0, 0) without any repeat."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) < 2:
            continue
        mean = sum(g) / len(g)
        ss += sum((x - mean) ** 2 for x in g)
        df += len(g) - 1
    return (math.sqrt(ss / df) if df else 0.0), df


def _t_cdf(t: float, df: int) -> float:
    """Student's t distribution function for a whole number of degrees of freedom (Abramowitz &
    Stegun 26.7.3–4, exact)."""
    if df > 1000:
        return NormalDist().cdf(t)
    th = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(th), math.cos(th)
    term = total = 1.0
    if df % 2:
        for k in range(2, df - 1, 2):
            term *= c * c * k / (k + 1)
            total += term
        a = 2 / math.pi * (th + (s * c * total if df > 1 else 0.0))
    else:
        for k in range(1, df - 2, 2):
            term *= c * c * k / (k + 1)
            total += term
        a = s * total
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (p ≥ 0.5); inf without any."""
    if df < 1 or p >= 1.0:
        return math.inf
    if p <= 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
        if hi > 1e12:
            return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def margin_factor(noise_k: float, df: int) -> float:
    """t: how many standard errors an improvement must exceed with this many degrees of freedom."""
    return t_quantile(NormalDist().cdf(noise_k), df)


@dataclass
class Verdict:
    status: str  # keep | discard | confirm (run it again)
    verdict: str  # words for the record and the table
    improvement: float  # positive = better, in metric units (mean of the runs vs the reference)
    confidence: float | None  # improvement / spread
    margin: float | None  # None: no noise estimate
    flag: str = ""
    remeasure_best: bool = False  # confirm: re-measure the best too before the candidate's next run
    again: bool = True  # confirm: run the candidate again
    runs: list[float] = field(default_factory=list)  # judge(): every run of the candidate
    best_runs: list[float] = field(default_factory=list)  # judge(): the best's re-measurements
    spread: float = 0.0  # judge(): the noise estimate the verdict used
    df: int = 0


def improvement(value: float, reference: float, direction: str) -> float:
    return reference - value if direction == "minimize" else value - reference


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def decide(
    runs: Sequence[float],
    ref: Sequence[float],
    direction: str,
    policy: str,
    min_delta: float,
    spread: float,
    df: int,
    noise_k: float,
    lines: tuple[int, int] = (0, 0),
) -> Verdict:
    """The verdict on a candidate measured `runs` times against the best's measurements `ref`."""
    m, n = len(runs), max(1, len(ref))
    imp = improvement(_mean(runs), _mean(ref), direction)
    conf = imp / spread if spread > 0 else None
    added, removed = lines
    if policy == "strict" or df < 1:
        # no noise estimate (yet): upstream's rule; confirm still asks for a run that gives one
        margin = min_delta
        if policy == "confirm" and m < MAX_RUNS and imp > min_delta and m == 1:
            return Verdict("confirm", "better; run again for a noise estimate", imp, conf, None, remeasure_best=n <= m)
        ok = imp > min_delta
        words = "better" if ok else ("worse" if imp < -min_delta else "equal within min_delta")
        words += "" if policy == "strict" else " (no noise estimate)"
        v = Verdict("keep" if ok else "discard", words, imp, conf, None if policy != "strict" else min_delta)
    else:
        se = spread * math.sqrt(1 / m + 1 / n)
        margin = max(min_delta, margin_factor(noise_k, df) * se)
        if imp > margin:
            v = Verdict("keep", f"confirmed better over {m} runs" if m > 1 else "better beyond noise", imp, conf, margin)
        elif policy == "confirm" and m < MAX_RUNS and imp > max(min_delta, LOW * se):
            return Verdict("confirm", f"better within noise: run {m + 1} of up to {MAX_RUNS}", imp, conf, margin,
                           remeasure_best=n <= m)
        elif policy == "margin" and n < MARGIN_REF and imp > max(min_delta, LOW * se):
            return Verdict("confirm", "better within noise: re-measure the best", imp, conf, margin, remeasure_best=True,
                           again=False)
        elif imp < -margin:
            v = Verdict("discard", "worse", imp, conf, margin)
        elif imp > 0 and m > 1:
            v = Verdict("discard", f"better but not confirmed over {m} runs", imp, conf, margin)
        elif imp > 0 and policy == "margin":
            v = Verdict("discard", "better but within noise", imp, conf, margin)
        else:
            v = Verdict("discard", "within noise", imp, conf, margin)
    if v.status == "discard" and abs(imp) <= max(margin, min_delta) and removed > added:
        v = Verdict("keep", f"equal within noise and {removed - added} lines simpler", imp, conf, v.margin)
    if v.status == "keep" and added - removed > COMPLEX_LINES and imp < 2 * max(margin, 1e-12):
        v.flag = f"adds {added - removed} lines for a marginal gain: worth a look"
    return v


Measure = Callable[[], Awaitable["float | None"]]


async def judge(
    first: float,
    ref: Sequence[float],
    direction: str,
    policy: str,
    min_delta: float,
    noise_k: float,
    noise: Callable[[list[float], list[float]], tuple[float, int]],
    again: Measure,
    best_again: Measure,
    lines: tuple[int, int] = (0, 0),
) -> Verdict:
    """Decide on a candidate whose first run measured `first`, running it again (`again`) and
    re-measuring the best (`best_again`) as long as the policy asks. `noise(candidate runs, new
    runs of the best)` is the noise estimate with them. A measurement that fails (None) ends it
    with a discard."""
    runs, best_runs = [first], []
    while True:
        spread, df = noise(runs, best_runs)
        v = decide(runs, [*ref, *best_runs], direction, policy, min_delta, spread, df, noise_k, lines)
        v.runs, v.best_runs, v.spread, v.df = runs, best_runs, spread, df
        if v.status != "confirm":
            return v
        x = await best_again() if v.remeasure_best else 0.0
        if x is not None and v.remeasure_best:
            best_runs.append(x)
        y = (await again() if v.again else 0.0) if x is not None else None
        if y is None:
            v.status, v.verdict = "discard", "a confirmation run failed"
            return v
        if v.again:
            runs.append(y)
