"""Noise-aware keep decisions on a workload with known Gaussian noise (sigma = 0.01).

The noise sequence is seeded by a run counter, so every run of the test sees the same draws.
"""

from __future__ import annotations

import pytest
from conftest import git, jsonl_runs, load_cfg, make_repo, run_engine

from autoresearch_tui.engine.policy import MAX_RUNS, decide, pooled_spread, t_quantile
from autoresearch_tui.engine.records import History
from autoresearch_tui.proposers.base import Edit, Proposal, Proposer

SIGMA = 0.01
NOISY = """\
import random
from pathlib import Path
EFFECT = 0.0
DUMMY = 0
counter = Path(".noise_counter")
k = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(k + 1))
rng = random.Random(1000 + k)
print(f"val_bpb: {1.0 - EFFECT + rng.gauss(0, %s):.6f}")
""" % SIGMA


class NullThenReal(Proposer):
    """`nulls` changes with no true effect, then one real improvement of 5 sigma."""

    name = "scripted"

    def __init__(self, nulls: int):
        self.nulls, self.n = nulls, 0

    async def propose(self, ctx):
        self.n += 1
        lines = ctx.files["train.py"].splitlines()
        if self.n <= self.nulls:
            cur = next(ln for ln in lines if ln.startswith("DUMMY = "))
            return Proposal(f"null change {self.n}", [Edit("train.py", cur, f"DUMMY = {self.n}")])
        cur = next(ln for ln in lines if ln.startswith("EFFECT = "))
        return Proposal("real improvement (5 sigma)", [Edit("train.py", cur, f"EFFECT = {5 * SIGMA}")])


def _session(tmp_path, policy, nulls=50, baseline_runs=3):
    root = make_repo(tmp_path / policy, train=NOISY,
                     metric={"keep_policy": policy, "baseline_runs": baseline_runs})
    run_engine(load_cfg(root), proposer=NullThenReal(nulls), max_iterations=nulls + 1)
    return jsonl_runs(root)


# margin decides on one run: with few repeated runs its margin is wide, so it gets more baseline runs
@pytest.mark.parametrize("policy, baseline_runs", [("margin", 8), ("confirm", 3)])
def test_no_null_change_is_kept_and_a_5_sigma_improvement_is(tmp_path, policy, baseline_runs):
    recs = _session(tmp_path, policy, baseline_runs=baseline_runs)
    base = [r for r in recs if r.get("is_baseline")]
    assert len(base) == baseline_runs
    noise = recs[-1]["noise"]
    assert 0.5 * SIGMA < noise < 2 * SIGMA  # the pooled spread of every repeated run estimates sigma
    assert History.from_dicts(recs).noise() == pytest.approx(noise)  # the History answers what the loop used
    nulls = [r for r in recs if r["description"].startswith("null change")]
    assert len(nulls) == 50
    assert [r["description"] for r in nulls if r["status"] == "keep"] == []
    real = recs[-1]
    assert real["description"] == "real improvement (5 sigma)" and real["status"] == "keep", real
    assert real["confidence"] > 1  # improvement in units of the measured spread
    if policy == "confirm":
        # candidates in the band were run again, and each row holds the mean of its runs
        again = [r for r in recs if r.get("runs")]
        assert again and all(r["metric"] == pytest.approx(sum(r["runs"]) / len(r["runs"])) for r in again)
        assert any(len(r["runs"]) > 2 for r in again)
        # the best (the baseline, 3 runs) was re-measured once a candidate had as many runs, and
        # those runs count in its mean, which the next experiment had to beat
        remeasured = [r for r in recs if r.get("best_runs")]
        assert remeasured and all(r["best_commit"] == base[0]["commit"] for r in remeasured)
        h = History.from_dicts(recs[:-1])
        assert len(h.measurements(base[0]["commit"])) == 3 + sum(len(r["best_runs"]) for r in remeasured)
        assert real["best_before"] == base[-1]["metric"]
        root = tmp_path / policy
        assert (root / ".autoresearch" / "logs" / f"{remeasured[0]['iteration']:05d}.best1.log").exists()
        # the best's files were put back after each re-measurement: the branch is clean, on the kept commit
        assert git(root, "status", "--porcelain", "--untracked-files=no").strip() == ""
        assert git(root, "rev-parse", "HEAD").strip() == real["commit"]


def test_strict_policy_keeps_noise_as_progress(tmp_path):
    # the contrast that makes the test above meaningful: upstream's rule keeps lucky draws
    recs = _session(tmp_path, "strict", nulls=20, baseline_runs=1)
    assert sum(1 for r in recs if r["description"].startswith("null change") and r["status"] == "keep") >= 3


def test_simplicity_criterion_and_complexity_flag():
    d = lambda runs, ref=(1.0, 1.0, 1.0), **kw: decide(runs, ref, kw.pop("direction", "minimize"), "margin", 0.0, 0.01, 20, 2.0, **kw)  # noqa: E731
    v = d([1.0], lines=(2, 10))
    assert v.status == "keep" and "simpler" in v.verdict
    v = d([0.97], lines=(40, 2))
    assert v.status == "keep" and "40" not in v.flag and "38 lines" in v.flag
    v = d([0.90], lines=(40, 2))
    assert v.status == "keep" and v.flag == ""
    assert d([1.03], direction="maximize").status == "keep"


def test_pooled_spread_and_t_quantiles():
    # two pieces of code measured 3 and 2 times: deviations from each one's own mean, df = 2 + 1
    s, df = pooled_spread([[1.0, 1.02, 0.98], [2.0, 2.03], [5.0]])
    assert df == 3 and s == pytest.approx(((0.0004 + 0.0004 + 2 * 0.015 ** 2) / 3) ** 0.5)
    assert pooled_spread([[1.0]]) == (0.0, 0)
    # Student's t (table values)
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.99, 5) == pytest.approx(3.365, abs=1e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)


def test_few_noise_samples_widen_the_margin():
    # the same spread, from 2 degrees of freedom or from 30: with 2 the margin is t(2) / t(30) wider
    few = decide([0.96], [1.0] * 4, "minimize", "margin", 0.0, 0.01, 2, 2.0)
    many = decide([0.96], [1.0] * 4, "minimize", "margin", 0.0, 0.01, 30, 2.0)
    assert few.status == "discard" and few.verdict == "better but within noise"
    assert many.status == "keep" and many.verdict == "better beyond noise"
    assert few.margin / many.margin == pytest.approx(t_quantile(0.97725, 2) / t_quantile(0.97725, 30), rel=1e-3)


def test_verdicts_say_what_happened():
    ref = [1.0, 1.0, 1.0]
    d = lambda runs, policy="confirm", ref=ref: decide(runs, ref, "minimize", policy, 0.0, 0.01, 10, 2.5)  # noqa: E731
    assert d([1.1]).verdict == "worse"
    assert d([1.001]).verdict == "within noise"
    assert d([0.995], "margin", ref=[1.0] * 4).verdict == "better but within noise"
    v = d([0.99], "margin")  # against a best measured 3 times: re-measure the best (only) first
    assert v.status == "confirm" and v.remeasure_best and not v.again
    v = d([0.99])  # better by a standard error: run again, and re-measure the best (3 runs, not more than the candidate's after it)
    assert v.status == "confirm" and not v.remeasure_best
    assert d([0.99, 0.99, 0.99]).remeasure_best
    v = d([0.995] * MAX_RUNS)
    assert v.status == "discard" and v.verdict == f"better but not confirmed over {MAX_RUNS} runs"
    assert d([0.97, 0.97]).verdict == "confirmed better over 2 runs"


def test_margin_needs_repeated_baselines(tmp_path):
    from autoresearch_tui.config import ConfigError, from_dict
    from pathlib import Path

    with pytest.raises(ConfigError, match="baseline_runs to 3"):
        from_dict({"metric": {"keep_policy": "margin"}}, Path("autoresearch.toml"))
