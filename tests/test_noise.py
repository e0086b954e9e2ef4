"""Noise-aware keep decisions on a workload with known Gaussian noise (sigma = 0.01).

The noise sequence is seeded by a run counter, so every run of the test sees the same draws.
"""

from __future__ import annotations

import pytest
from conftest import jsonl_runs, load_cfg, make_repo, run_engine

from autoresearch_tui.engine.policy import decide, robust_spread
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


def _session(tmp_path, policy, nulls=50, baseline_runs=5):
    root = make_repo(tmp_path / policy, train=NOISY,
                     metric={"keep_policy": policy, "baseline_runs": baseline_runs, "noise_k": 2.0})
    run_engine(load_cfg(root), proposer=NullThenReal(nulls), max_iterations=nulls + 1)
    return jsonl_runs(root)


@pytest.mark.parametrize("policy", ["margin", "confirm"])
def test_no_null_change_is_kept_and_a_5_sigma_improvement_is(tmp_path, policy):
    recs = _session(tmp_path, policy)
    base = [r for r in recs if r.get("is_baseline")]
    assert len(base) == 5
    noise = recs[-1]["noise"]
    assert 0.5 * SIGMA < noise < 2 * SIGMA  # the spread of 5 baseline runs estimates sigma
    assert History.from_dicts(recs).noise() == pytest.approx(noise)  # the History answers what the loop used
    nulls = [r for r in recs if r["description"].startswith("null change")]
    assert len(nulls) == 50
    assert [r["description"] for r in nulls if r["status"] == "keep"] == []
    real = recs[-1]
    assert real["description"] == "real improvement (5 sigma)" and real["status"] == "keep", real
    assert real["confidence"] > 1  # improvement in units of the measured spread
    if policy == "confirm":
        # at least one candidate in the band was run twice, and the row holds the mean
        twice = [r for r in recs if r.get("runs")]
        assert twice and all(abs(r["metric"] - sum(r["runs"]) / 2) < 1e-12 for r in twice)


def test_strict_policy_keeps_noise_as_progress(tmp_path):
    # the contrast that makes the test above meaningful: upstream's rule keeps lucky draws
    recs = _session(tmp_path, "strict", nulls=20, baseline_runs=1)
    assert sum(1 for r in recs if r["description"].startswith("null change") and r["status"] == "keep") >= 3


def test_simplicity_criterion_and_complexity_flag():
    v = decide(1.0, 1.0, 3, "minimize", "margin", 0.0, 0.01, 2.0, lines=(2, 10))
    assert v.status == "keep" and "simpler" in v.verdict
    v = decide(0.97, 1.0, 3, "minimize", "margin", 0.0, 0.01, 2.0, lines=(40, 2))
    assert v.status == "keep" and "40" not in v.flag and "38 lines" in v.flag
    v = decide(0.90, 1.0, 3, "minimize", "margin", 0.0, 0.01, 2.0, lines=(40, 2))
    assert v.status == "keep" and v.flag == ""
    assert decide(1.03, 1.0, 3, "maximize", "margin", 0.0, 0.01, 2.0).status == "keep"


def test_robust_spread_ignores_an_outlier():
    assert abs(robust_spread([1.0, 1.01, 0.99, 1.0, 5.0]) - 0.014826) < 1e-6
    assert robust_spread([1.0]) == 0.0


def test_margin_needs_repeated_baselines(tmp_path):
    from autoresearch_tui.config import ConfigError, from_dict
    from pathlib import Path

    with pytest.raises(ConfigError, match="baseline_runs to 3"):
        from_dict({"metric": {"keep_policy": "margin"}}, Path("autoresearch.toml"))
