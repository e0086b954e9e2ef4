"""The keep decision, honest about noise.

* noise: the robust spread (1.4826 × MAD, or the sample deviation when the MAD is 0) of the
  baseline's repeated runs (`[metric] baseline_runs`); 0 when the baseline ran once. `History.noise()`.
* reference: the mean of every measurement of the best commit (repeats and confirmations).
  `History.reference()`.
* margin: what an improvement must beat: max(min_delta, noise_k × spread × √(1 + 1/n)),
  the spread of the difference between one new run and a mean of n runs.
* policies: `strict` (upstream: better by more than min_delta), `margin` (better by more than
  the margin), `confirm` (clearly better — twice the margin — is kept at once; a candidate in
  the band between half the margin and twice the margin is run again, and kept if the mean of
  its runs beats the reference by more than margin / √2).
* simplicity: equal within the margin while removing more lines than it adds ⇒ keep; a keep
  that adds many lines for less than twice the margin is flagged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

COMPLEX_LINES = 20


def robust_spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    s = 1.4826 * mad
    return s if s > 0 else statistics.stdev(values)


@dataclass
class Verdict:
    status: str  # keep | discard | confirm (run it again)
    verdict: str  # words for the record and the table
    improvement: float  # positive = better, in metric units
    confidence: float | None  # improvement / spread
    margin: float
    flag: str = ""


def improvement(value: float, reference: float, direction: str) -> float:
    return reference - value if direction == "minimize" else value - reference


def decide(
    value: float,
    reference: float,
    n_reference: int,
    direction: str,
    policy: str,
    min_delta: float,
    spread: float,
    noise_k: float,
    lines: tuple[int, int] = (0, 0),
    confirmed_runs: int = 1,
) -> Verdict:
    imp = improvement(value, reference, direction)
    noise = spread * math.sqrt(1 / max(1, confirmed_runs) + 1 / max(1, n_reference))
    margin = max(min_delta, noise_k * noise) if policy != "strict" else min_delta
    conf = imp / spread if spread > 0 else None
    added, removed = lines
    if policy == "strict":
        ok = imp > min_delta
        v = Verdict("keep" if ok else "discard", "better" if ok else "not better", imp, conf, margin)
    elif policy == "confirm" and confirmed_runs == 1 and margin / 2 < imp <= 2 * margin and spread > 0:
        return Verdict("confirm", "within the noise band: run again", imp, conf, margin)
    else:
        ok = imp > margin
        words = ("confirmed by a second run" if confirmed_runs > 1 else "beyond the noise margin") if ok else (
            "not confirmed" if confirmed_runs > 1 else "within the noise margin")
        v = Verdict("keep" if ok else "discard", words, imp, conf, margin)
    if v.status == "discard" and abs(imp) <= max(margin, min_delta) and removed > added:
        v = Verdict("keep", f"equal within noise and {removed - added} lines simpler", imp, conf, margin)
    if v.status == "keep" and added - removed > COMPLEX_LINES and imp < 2 * max(margin, 1e-12):
        v.flag = f"adds {added - removed} lines for a marginal gain: worth a look"
    return v

