"""Out of memory: detected from the run's log and exit, and one retry at half the device batch
(real temporary git repositories, real child processes, the real offline proposer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOY_TRAIN, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows

from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine.measure import evaluate_run
from autoresearch_tui.engine.records import RunRecord
from autoresearch_tui.engine.runner import RunOutcome
from autoresearch_tui.proposers.base import ProposalContext
from autoresearch_tui.proposers.mutate import MutateProposer
from autoresearch_tui.proposers.prompt import build_messages

# A training script that does not fit when DEVICE_BATCH_SIZE x DEPTH passes 64: it fails the way
# PyTorch does (the message on stderr, exit 1). The metric is best at DEPTH 4 with an effective
# batch (DEVICE_BATCH_SIZE x GRAD_ACCUM_STEPS) of 32.
OOM_TRAIN = """\
import sys
LR = 0.01
DEVICE_BATCH_SIZE = 32
GRAD_ACCUM_STEPS = 1
DEPTH = 2
if DEVICE_BATCH_SIZE * DEPTH > 64:
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "train.py", line 9, in <module>', file=sys.stderr)
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
          "of 79.10 GiB of which 1.20 GiB is free.", file=sys.stderr)
    sys.exit(1)
val = 1.0 + abs(DEPTH - 4) * 0.1 + abs(DEVICE_BATCH_SIZE * GRAD_ACCUM_STEPS - 32) * 0.01 + abs(LR - 0.01)
print("---")
print(f"val_bpb:          {val:.6f}")
"""


def _session(tmp_path: Path, idea: str, n: int, **research) -> tuple[Path, list[dict], list]:
    root = make_repo(tmp_path / "r", train=OOM_TRAIN, research=research or None)
    (root / "autoresearch.md").write_text(f"## Backlog\n\n- [ ] {idea}\n")
    cfg = load_cfg(root)
    _, events = run_engine(cfg, proposer=MutateProposer(), max_iterations=n)
    return root, jsonl_runs(root), events


def _diff(root: Path, n: int) -> str:
    return git(root, "diff", f"refs/autoresearch/t1/{n}^", f"refs/autoresearch/t1/{n}")


def test_an_idea_that_runs_out_of_memory_is_retried_once_at_half_the_device_batch_and_kept(tmp_path):
    root, recs, events = _session(tmp_path, "DEPTH=4", 2)
    assert [r["status"] for r in recs] == ["keep", "crash", "keep"]
    first, retry = recs[1], recs[2]
    assert first["description"] == "DEPTH 2 -> 4" and first["crash_kind"] == "oom"
    assert "out of memory" in first["crash_reason"] and "CUDA out of memory" in first["crash_reason"]
    assert "no_retry" not in first
    # the retry: its own experiment, linked to the first, and it says so
    assert retry["repair_of"] == 1
    assert retry["description"] == ("DEPTH 2 -> 4 (retry of #1 at half the device batch: "
                                    "DEVICE_BATCH_SIZE 32 -> 16, GRAD_ACCUM_STEPS 1 -> 2)")
    assert retry["metric"] == pytest.approx(1.0)
    assert retry["idea"] == "DEPTH=4"
    diff = _diff(root, 2)
    for line in ("+DEPTH = 4", "-DEPTH = 2", "+DEVICE_BATCH_SIZE = 16", "-DEVICE_BATCH_SIZE = 32",
                 "+GRAD_ACCUM_STEPS = 2", "-GRAD_ACCUM_STEPS = 1"):
        assert line in diff.splitlines(), diff
    # the branch stands on the retry; results.tsv has both rows, described
    assert git(root, "rev-parse", "HEAD").strip() == retry["commit"]
    rows = tsv_rows(root)
    assert [r["status"] for r in rows] == ["keep", "crash", "keep"]
    assert rows[2]["description"] == retry["description"]
    notices = [e.text for e in events if isinstance(e, ev.Notice)]
    assert any("#1 ran out of memory: asking for one retry at half the device batch" in t for t in notices), notices


def test_an_idea_that_raised_the_batch_is_not_retried(tmp_path):
    root, recs, _ = _session(tmp_path, "DEVICE_BATCH_SIZE=64", 2)
    assert [r["status"] for r in recs[:2]] == ["keep", "crash"]
    assert recs[1]["crash_kind"] == "oom"
    assert recs[1]["no_retry"] == ("the experiment raised the batch (DEVICE_BATCH_SIZE 32 -> 64): "
                                   "a smaller batch would undo the idea")
    assert recs[2].get("repair_of") is None
    assert "retry of" not in recs[2]["description"]
    assert not [ln for ln in _diff(root, 2).splitlines() if ln[:1] in "+-" and "DEVICE_BATCH_SIZE" in ln]


def test_a_retry_that_runs_out_of_memory_again_is_not_retried_a_second_time(tmp_path):
    root, recs, _ = _session(tmp_path, "DEPTH=8", 3)
    assert [r["status"] for r in recs[:3]] == ["keep", "crash", "crash"]
    assert recs[2]["repair_of"] == 1 and recs[2]["crash_kind"] == "oom"
    assert "+DEVICE_BATCH_SIZE = 16" in _diff(root, 2).splitlines()
    assert recs[2]["no_retry"] == "already a retry of #1"
    assert recs[3].get("repair_of") is None and "retry of" not in recs[3]["description"]
    assert not [ln for ln in _diff(root, 3).splitlines() if ln[:1] in "+-" and "DEVICE_BATCH_SIZE" in ln]


def test_oom_retry_false_turns_the_retry_off(tmp_path):
    root, recs, _ = _session(tmp_path, "DEPTH=4", 2, oom_retry=False)
    assert [r["status"] for r in recs[:2]] == ["keep", "crash"]
    assert recs[1]["crash_kind"] == "oom" and recs[1]["no_retry"] == "oom_retry is off"
    assert recs[2].get("repair_of") is None and "retry of" not in recs[2]["description"]


def test_a_run_killed_by_sigkill_with_no_other_cause_is_out_of_memory(tmp_path):
    # a real child killed by SIGKILL (as the kernel's OOM killer does): the shell reports 137
    train = OOM_TRAIN.replace("if DEVICE_BATCH_SIZE * DEPTH > 64:",
                              "if DEPTH == 3:\n    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                              "if DEVICE_BATCH_SIZE * DEPTH > 64:")
    root = make_repo(tmp_path / "r", train=train)
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] DEPTH=3\n")
    run_engine(load_cfg(root), proposer=MutateProposer(), max_iterations=2)
    recs = jsonl_runs(root)
    assert recs[1]["exit_code"] == 137 and recs[1]["crash_kind"] == "oom"
    assert recs[1]["crash_reason"].startswith("exit code 137: out of memory")
    assert recs[2]["repair_of"] == 1 and "retry of #1 at half the device batch" in recs[2]["description"]


# ------------------------------------------------------------------ detection, one message at a time

OOM_LOGS = {
    "cuda": ("step 1\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
             "capacity of 79.1 GiB\n", "CUDA out of memory"),
    "cuda-legacy": ("RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported\n",
                    "CUDA error: out of memory"),
    "mps": ("RuntimeError: MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB, max allowed: "
            "18.13 GB). Tried to allocate 256.00 MiB on private pool.\n", "MPS backend out of memory"),
    "memoryerror": ('Traceback (most recent call last):\n  File "train.py", line 3, in <module>\nMemoryError\n', "MemoryError"),
}


def _measure(tmp_path: Path, text: str, outcome: RunOutcome, kill_reason: str = "") -> dict:
    log = tmp_path / "run.log"
    log.write_text(text)
    return evaluate_run(log, outcome, "val_bpb", "", [], kill_reason)


@pytest.mark.parametrize("kind", list(OOM_LOGS))
def test_out_of_memory_is_detected_from_the_log(tmp_path, kind):
    text, says = OOM_LOGS[kind]
    rec = _measure(tmp_path, text, RunOutcome(1, False, False, 1.0, 0.0))
    assert rec["crash_kind"] == "oom"
    assert rec["crash_reason"].startswith("exit code 1: out of memory"), rec["crash_reason"]
    assert says in rec["crash_reason"]


def test_exit_137_without_another_cause_is_out_of_memory_but_not_with_one(tmp_path):
    rec = _measure(tmp_path, "step 1\nstep 2\n", RunOutcome(137, False, False, 1.0, 0.0))
    assert rec["crash_kind"] == "oom" and "OOM killer" in rec["crash_reason"]
    rec = _measure(tmp_path, "Traceback (most recent call last):\nValueError: bad\n", RunOutcome(137, False, False, 1.0, 0.0))
    assert rec["crash_kind"] != "oom" and "out of memory" not in rec["crash_reason"]
    # killed by us (the user's x, a timeout): not out of memory, whatever the log says
    rec = _measure(tmp_path, "step 1\n", RunOutcome(137, False, True, 1.0, 0.0), kill_reason="killed by the user")
    assert rec["crash_kind"] != "oom" and rec["crash_reason"] == "killed by the user"
    rec = _measure(tmp_path, OOM_LOGS["cuda"][0], RunOutcome(137, True, True, 1.0, 0.0))
    assert rec["crash_kind"] == "timeout"


def test_an_ordinary_crash_is_not_out_of_memory(tmp_path):
    rec = _measure(tmp_path, "Traceback (most recent call last):\nRuntimeError: boom\n", RunOutcome(1, False, False, 1.0, 0.0))
    assert rec["crash_kind"] == "other" and "out of memory" not in rec["crash_reason"]


def test_the_llm_gets_a_repair_round_that_asks_for_half_the_device_batch(tmp_path):
    crash = RunRecord(iteration=3, status="crash", description="double the depth", crash_kind="oom",
                      crash_reason="exit code 1: out of memory (CUDA: ...)", error_tail="torch.OutOfMemoryError: CUDA out of memory.")
    pc = ProposalContext(iteration=4, root=tmp_path, files={"train.py": TOY_TRAIN}, read_only={}, goal="g", metric="val_bpb",
                         direction="minimize", crash=crash, ideas=["something else"])
    prompt = build_messages(pc, ["train.py"], [])[1]["content"]
    assert "## Retry the last experiment at half the device batch\n#3 (double the depth) ran out of memory" in prompt
    assert "per-device batch size halved and the effective batch kept" in prompt
    assert "double the gradient accumulation steps where the script has them" in prompt
    assert '"(retry of #3 at half the device batch)"' in prompt
    assert "Fix the last experiment" not in prompt and "MUST implement it" not in prompt


def test_the_llm_retry_comes_first_even_with_a_proposal_prepared_during_the_crashed_run(tmp_path):
    from llm_server import ScriptedLLM, edit

    from autoresearch_tui.proposers.llm import LLMProposer

    replies = [
        edit("double the depth", "DEPTH = 2", "DEPTH = 4"),  # prepared during the baseline: #1, runs out of memory
        edit("raise LR", "LR = 0.01", "LR = 0.02"),  # prepared during #1: dropped, the retry goes first
        edit("double the depth, half the device batch", "DEVICE_BATCH_SIZE = 32\nGRAD_ACCUM_STEPS = 1\nDEPTH = 2",
             "DEVICE_BATCH_SIZE = 16\nGRAD_ACCUM_STEPS = 2\nDEPTH = 4"),  # the repair round: #2
        edit("raise LR", "LR = 0.01", "LR = 0.02"),  # prepared during #2 (unused: max_iterations)
    ]
    with ScriptedLLM(replies) as srv:
        root = make_repo(tmp_path / "r", train=OOM_TRAIN,
                         proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base, "request_timeout_s": 5})
        cfg = load_cfg(root)
        run_engine(cfg, proposer=LLMProposer(cfg), max_iterations=2)
    recs = jsonl_runs(root)
    assert [r["status"] for r in recs] == ["keep", "crash", "keep"]
    assert recs[1]["crash_kind"] == "oom"
    assert recs[2]["repair_of"] == 1
    assert recs[2]["description"] == "double the depth, half the device batch (retry of #1 at half the device batch)"
    prompts = [r["messages"][1]["content"] for r in srv.requests]
    assert len(prompts) >= 3
    assert "Retry the last experiment at half the device batch\n#1 (double the depth) ran out of memory" in prompts[2]
    assert not any("Retry the last experiment" in p for i, p in enumerate(prompts) if i != 2)
