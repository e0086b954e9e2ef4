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
from autoresearch_tui.proposers.mutate import MutateProposer, find_constants, fmt


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


def _ctx(files, history=(), ideas=(), rejected=()):
    return ProposalContext(
        iteration=len(history), root=Path("."), files=dict(files), read_only={}, goal="", metric="m",
        direction="minimize", history=list(history), ideas=list(ideas), rejected=list(rejected),
    )


def run(coro):
    return asyncio.run(coro)


def test_mutate_first_proposal_and_edit_applies():
    p = run(MutateProposer().propose(_ctx({"train.py": SRC})))
    assert p.description == "LR 0.001 -> 0.002"
    new = apply_edits({"train.py": SRC}, p.edits, Path("."), ["train.py"], [])
    assert "LR = 0.002\n" in new["train.py"]


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
