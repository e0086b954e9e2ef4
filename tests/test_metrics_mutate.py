"""Metric extraction and the offline mutate proposer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autoresearch_tui.engine.metrics import extract, read_log_text
from autoresearch_tui.engine.records import RunRecord
from autoresearch_tui.proposers.base import ProposalContext, ProposalError
from autoresearch_tui.proposers.edits import Rejected, apply_edits, diff_hash
from autoresearch_tui.proposers.base import Edit
from autoresearch_tui.proposers.mutate import MutateProposer, candidates, find_constants, fmt


def test_summary_block_form_last_match_wins():
    text = "val_bpb: 1.5\nstep 10\n---\nval_bpb:          0.997900\n"
    assert extract(text, "val_bpb").value == pytest.approx(0.9979)


def test_metric_form_and_order_between_forms():
    assert extract("METRIC val_bpb=0.5\nval_bpb: 0.7\n", "val_bpb").value == 0.7
    assert extract("val_bpb: 0.7\nxx METRIC val_bpb=0.5\n", "val_bpb").value == 0.5


def test_progress_lines_with_carriage_returns(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"step 1 loss 3.2\rstep 2 loss 3.1\rval_bpb: 1.25\rstep 3")
    assert extract(read_log_text(log), "val_bpb").value == 1.25


def test_non_utf8_bytes_and_nul(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"\xff\xfe garbage \x00\x01\nval_bpb: 0.25\n\x80\x81")
    assert extract(read_log_text(log), "val_bpb").value == 0.25


def test_nan_inf_text_and_missing():
    assert "not finite" in extract("val_bpb: nan\n", "val_bpb").reason
    assert "not finite" in extract("val_bpb: inf\n", "val_bpb").reason
    r = extract("val_bpb: fast\n", "val_bpb")
    assert r.value is None and "not a number" in r.reason
    r = extract("loss: 0.1\n", "val_bpb")
    assert r.value is None and "never printed" in r.reason


def test_name_is_not_a_prefix_match():
    assert extract("val_bpb_ema: 0.1\nval_bpb: 0.2\n", "val_bpb").value == 0.2
    assert extract("xval_bpb: 0.1\n", "val_bpb").value is None


def test_custom_regex_replaces_default_forms():
    text = "val_bpb: 0.9\nfinal loss 0.123 done\n"
    assert extract(text, "val_bpb", r"final loss ([0-9.]+)").value == 0.123
    assert extract("val_bpb: 0.9\n", "val_bpb", r"final loss ([0-9.]+)").value is None


def test_huge_single_line_log_reads_the_tail(tmp_path):
    log = tmp_path / "log"
    with open(log, "wb") as f:
        f.write(b"x" * (50 * 1024 * 1024))
        f.write(b"\nval_bpb: 0.5\n")
    assert extract(read_log_text(log), "val_bpb").value == 0.5


SRC = '''\
import torch
LR = 0.001
DEPTH = 4
WIDTH: int = 256
USE_BIAS = True
ACT = "gelu"
OPT = "adamw"  # one of: adamw, sgd
SEED = 42
DATA_PATH = "data"
BETA2 = 0.95
x = LR * 2
def f():
    INNER = 3
'''


def test_find_constants_skips_seed_paths_and_inner_names():
    names = [c.name for c in find_constants("train.py", SRC)]
    assert names == ["LR", "DEPTH", "WIDTH", "USE_BIAS", "ACT", "OPT", "BETA2"]
    opt = next(c for c in find_constants("train.py", SRC) if c.name == "OPT")
    assert opt.choices == ["adamw", "sgd"]


def _ctx(files, history=(), ideas=(), rejected=(), in_flight=()):
    return ProposalContext(
        iteration=len(history), root=Path("."), files=dict(files), read_only={}, goal="", metric="m",
        direction="minimize", history=list(history), ideas=list(ideas), rejected=list(rejected), in_flight=list(in_flight),
    )


def run(coro):
    return asyncio.run(coro)


def test_mutate_first_proposal_and_edit_applies():
    p = run(MutateProposer().propose(_ctx({"train.py": SRC})))
    assert p.description == "LR 0.001 -> 0.00125"  # the nearest move first
    new = apply_edits({"train.py": SRC}, p.edits, Path("."), ["train.py"], [])
    assert "LR = 0.00125\n" in new["train.py"]


def test_mutate_never_repeats_and_explores_around_a_win():
    prop = MutateProposer()
    hist = [RunRecord(iteration=0, status="keep", description="baseline"),
            RunRecord(iteration=1, status="keep", description="LR 0.001 -> 0.002", mutation={"name": "LR", "old": "0.001", "new": "0.002"})]
    files = {"train.py": SRC.replace("LR = 0.001", "LR = 0.002")}
    p = run(prop.propose(_ctx(files, hist)))
    assert p.description == "LR 0.002 -> 0.004"  # push further the same way
    hist.append(RunRecord(iteration=2, status="discard", description=p.description, mutation=p.mutation))
    seen = {h.description for h in hist}
    for _ in range(25):
        p = run(prop.propose(_ctx(files, hist)))
        assert p.description not in seen
        assert p.description != "LR 0.002 -> 0.001"  # the old kept value counts as tried
        seen.add(p.description)
        hist.append(RunRecord(iteration=len(hist), status="discard", description=p.description, mutation=p.mutation))


def test_mutate_reads_backlog_orders():
    prop = MutateProposer()
    for idea, desc in [("LR=3e-4", "LR 0.001 -> 0.0003"), ("DEPTH 6", "DEPTH 4 -> 6"), ("set act to relu", "ACT 'gelu' -> 'relu'"),
                       ("use_bias: false", "USE_BIAS True -> False")]:
        p = run(prop.propose(_ctx({"train.py": SRC}, ideas=[idea])))
        assert p.description == desc and p.idea == idea
    assert not prop.can_address("try rotary embeddings", _ctx({"train.py": SRC}))


def test_mutate_exhaustion_is_reported():
    with pytest.raises(ProposalError) as ei:
        run(MutateProposer().propose(_ctx({"train.py": "x = [1]\n"})))
    assert ei.value.exhausted and "no tunable" in str(ei.value)


def test_fmt_values():
    assert fmt(0.002) == "0.002" and fmt(3e-4) == "0.0003" and fmt(1.5e-5) == "1.50e-5" and fmt(True) == "True" and fmt(64) == "64"


def test_edits_whitespace_tolerant_fallback_and_ambiguity(tmp_path):
    files = {"train.py": "def f():\n    a = 1\n    b = 2\n\ndef g():\n    a = 1\n"}
    new = apply_edits(files, [Edit("train.py", "a = 1\nb = 2", "    a = 3\n    b = 4")], tmp_path, ["train.py"], [])
    assert "    a = 3\n    b = 4\n" in new["train.py"]
    with pytest.raises(Rejected, match="matches 2 places"):
        apply_edits(files, [Edit("train.py", "    a = 1\n", "    a = 9\n")], tmp_path, ["train.py"], [])
    with pytest.raises(Rejected, match="not found"):
        apply_edits(files, [Edit("train.py", "zzz", "y")], tmp_path, ["train.py"], [])
    with pytest.raises(Rejected, match="would not parse"):
        apply_edits(files, [Edit("train.py", "b = 2", "b = (")], tmp_path, ["train.py"], [])
    with pytest.raises(Rejected, match="no edits"):
        apply_edits(files, [], tmp_path, ["train.py"], [])
    with pytest.raises(Rejected, match="out of scope"):
        apply_edits(files, [Edit("other.py", "a", "b")], tmp_path, ["train.py"], [])


def test_edits_reject_symlinks(tmp_path):
    (tmp_path / "real.py").write_text("A = 1\n")
    (tmp_path / "train.py").symlink_to("real.py")
    with pytest.raises(Rejected, match="symbolic link"):
        apply_edits({"train.py": "A = 1\n"}, [Edit("train.py", "A = 1", "A = 2")], tmp_path, ["train.py"], [])


def test_diff_hash_ignores_whitespace_but_not_content():
    old = {"t.py": "A = 1\nB = 2\n"}
    assert diff_hash(old, {"t.py": "A = 3\nB = 2\n"}) == diff_hash(old, {"t.py": "A  =  3\nB = 2\n"})
    assert diff_hash(old, {"t.py": "A = 3\nB = 2\n"}) != diff_hash(old, {"t.py": "A = 4\nB = 2\n"})
    # the same edit made to other code (B was kept at 5 meanwhile) is another experiment
    assert diff_hash(old, {"t.py": "A = 3\nB = 2\n"}) != diff_hash({"t.py": "A = 1\nB = 5\n"}, {"t.py": "A = 3\nB = 5\n"})


# ------------------------------------------------------------------ the offline search's order
def _proposals(files, n, keep=lambda p: False, hist=None):
    """Up to n proposals in a row (fewer when it runs out), each recorded (kept when `keep(p)`),
    the files following the keeps."""
    prop, hist, files, out = MutateProposer(), list(hist or []), dict(files), []
    for _ in range(n):
        try:
            p = run(prop.propose(_ctx(files, hist)))
        except ProposalError:
            break
        out.append(p.description)
        kept = keep(p)
        hist.append(RunRecord(iteration=len(hist), status="keep" if kept else "discard", description=p.description, mutation=p.mutation))
        if kept:
            files = apply_edits(files, p.edits, Path("."), ["train.py"], [])
            files = {"train.py": files["train.py"]}
    return out


def test_mutate_tries_nearest_moves_first_then_wider():
    assert _proposals({"train.py": "LR = 0.01\nWIDTH = 64\n"}, 8) == [
        "LR 0.01 -> 0.0125", "LR 0.01 -> 0.008", "WIDTH 64 -> 80", "WIDTH 64 -> 51",
        "LR 0.01 -> 0.011", "LR 0.01 -> 0.00909", "WIDTH 64 -> 70", "WIDTH 64 -> 58"]
    assert _proposals({"train.py": "LR = 0.01\n"}, 12)[4:] == [
        "LR 0.01 -> 0.015", "LR 0.01 -> 0.00667", "LR 0.01 -> 0.02", "LR 0.01 -> 0.005",
        "LR 0.01 -> 0.04", "LR 0.01 -> 0.0025", "LR 0.01 -> 0.1", "LR 0.01 -> 0.001"]


def test_mutate_continues_a_win_with_the_moves_own_factor_and_then_its_direction_first():
    # DEPTH 3 -> 4 won: 4 -> 5; WARMUP 20 -> 16 won: 16 -> 13 (x0.8 again, not 16 x 16/20 rounded), 13 -> 10
    seen = _proposals({"train.py": "WARMUP = 20\nDEPTH = 3\n"}, 6, keep=lambda p: p.description in (
        "WARMUP 20 -> 16", "WARMUP 16 -> 13", "DEPTH 3 -> 4"))
    assert seen == ["DEPTH 3 -> 4", "DEPTH 4 -> 5", "WARMUP 20 -> 25", "WARMUP 20 -> 16", "WARMUP 16 -> 13", "WARMUP 13 -> 10"]
    assert _proposals({"train.py": "WARMUP = 25\n"}, 1, hist=[RunRecord(
        iteration=1, status="keep", description="WARMUP 20 -> 25", mutation={"name": "WARMUP", "old": "20", "new": "25"})]) == ["WARMUP 25 -> 31"]
    # after a keep elsewhere WARMUP's moves are open again, and down (the way it won) comes first
    mut = lambda name, old, new: {"name": name, "old": old, "new": new}  # noqa: E731
    nxt = _proposals({"train.py": "WARMUP = 13\nDEPTH = 4\n"}, 1, hist=[
        RunRecord(iteration=1, status="keep", description="WARMUP 16 -> 13", mutation=mut("WARMUP", "16", "13")),
        RunRecord(iteration=2, status="discard", description="WARMUP 13 -> 10", mutation=mut("WARMUP", "13", "10")),
        RunRecord(iteration=3, status="keep", description="DEPTH 3 -> 4", mutation=mut("DEPTH", "3", "4")),
        RunRecord(iteration=4, status="discard", description="DEPTH 4 -> 5", mutation=mut("DEPTH", "4", "5"))])
    assert nxt == ["WARMUP 13 -> 10"]


def test_mutate_reopens_a_constants_values_after_another_is_kept():
    files = {"train.py": "LR = 0.01\nWD = 0.1\n"}
    tried_lr = [RunRecord(iteration=i, status="discard", description=d, mutation={"name": "LR", "old": "0.01", "new": v})
                for i, (d, v) in enumerate([("LR 0.01 -> 0.0125", "0.0125"), ("LR 0.01 -> 0.008", "0.008")], 1)]
    wd = [RunRecord(iteration=3, status="discard", description="WD 0.1 -> 0.125", mutation={"name": "WD", "old": "0.1", "new": "0.125"}),
          RunRecord(iteration=4, status="discard", description="WD 0.1 -> 0.08", mutation={"name": "WD", "old": "0.1", "new": "0.08"})]
    # nothing kept: LR's tried values stay tried; the search widens
    assert _proposals(files, 1, hist=tried_lr + wd) == ["LR 0.01 -> 0.011"]
    # WD 0.1 -> 0.08 kept: on the new code LR's nearest moves are open again (after WD's next step)
    wd[1].status = "keep"
    files = {"train.py": "LR = 0.01\nWD = 0.08\n"}
    assert _proposals(files, 3, hist=tried_lr + wd) == ["WD 0.08 -> 0.064", "LR 0.01 -> 0.0125", "LR 0.01 -> 0.008"]


def test_experiments_in_flight_count_as_tried():
    running = RunRecord(iteration=1, status="", description="LR 0.001 -> 0.00125", mutation={"name": "LR", "old": "0.001", "new": "0.00125"})
    p = run(MutateProposer().propose(_ctx({"train.py": SRC}, in_flight=[running])))
    assert p.description == "LR 0.001 -> 0.0008"


def test_only_module_level_settings_are_candidates():
    src = (
        "LR = 0.01\n"
        "step = 0\n"  # a loop counter
        "while step < 3:\n"
        "    step += 1\n"
        "WIDTH = 64\n"
        "WIDTH = 128  # reassigned later\n"
        "for i in range(2):\n"
        "    pass\n"
        "i = 5\n"  # also a loop target above
        "CALLS = 0\n"
        "def count():\n"
        "    global CALLS\n"
        "    CALLS += 1\n"
        "    LR = 1.0  # a local, not the setting\n"
        "    return LR\n"
        "K = 3\n"
        "ks = [K for K in range(K)]\n"  # a comprehension's own name
    )
    assert [c.name for c in find_constants("train.py", src)] == ["LR", "K"]


def test_aliased_constants_are_tuned_once_and_signs_change_where_values_may_be_negative():
    src = "LR_BASE = 0.01\nLR_MULT = 1.0\nlr = LR_BASE * LR_MULT\nscale = 2 / (LR_MULT * LR_BASE)\nOUT_BIAS = 0.5\nSHIFT_STEPS = -2\n"
    seen = {d.split()[0] for d in _proposals({"train.py": src}, 40)}
    assert seen == {"LR_BASE", "OUT_BIAS", "SHIFT_STEPS"}
    # used on its own too: then it is a setting of its own
    assert "LR_MULT" in {d.split()[0] for d in _proposals({"train.py": src + "warm = LR_MULT > 1\n"}, 40)}
    consts = {c.name: c for c in find_constants("train.py", src)}
    assert [-0.5] in candidates(consts["OUT_BIAS"])  # a bias may be negative: its sign is a move
    assert candidates(consts["SHIFT_STEPS"])[0] == [-1, -3] and [2] in candidates(consts["SHIFT_STEPS"])
    assert all(x > 0 for tier in candidates(consts["LR_BASE"]) for x in tier)  # a learning rate never is
