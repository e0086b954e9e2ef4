"""The LLM proposer through litellm over real HTTP to a scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import TOY_TRAIN, Gate, drive_engine, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows, until
from llm_server import ScriptedLLM, edit

from autoresearch_tui.engine import events as ev
from autoresearch_tui.proposers.llm import LLMProposer, parse_answer, redact

SENTINEL = "sk-SENTINEL-7f3a9c2e1b4d"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)


def _repo(tmp_path, server, **proposer):
    proposer.setdefault("fallback", "none")  # these tests are about the model itself (test_fallback.py: with one)
    root = make_repo(tmp_path / "r", proposer={"kind": "llm", "model": "openai/test-model", "api_base": server.base,
                                               "request_timeout_s": 5, "max_attempts": 3, **proposer})
    return root


def _engine_run(root, n=1, backoff=0.01, **kw):
    cfg = load_cfg(root)
    prop = LLMProposer(cfg)
    prop.backoff_base = backoff
    return run_engine(cfg, proposer=prop, max_iterations=n, **kw)


def test_good_edit_is_committed_run_and_kept(tmp_path):
    with ScriptedLLM([edit("widen to 64", "WIDTH = 32", "WIDTH = 64")]) as srv:
        root = _repo(tmp_path, srv)
        eng, events = _engine_run(root)
    recs = jsonl_runs(root)
    assert recs[1]["description"] == "widen to 64" and recs[1]["status"] == "keep"
    assert recs[1]["hypothesis"] == "it should help"
    assert recs[1]["tokens"] == 120 and recs[1]["proposer"] == "llm"
    assert "WIDTH = 64" in (root / "train.py").read_text()
    cost = [e for e in events if isinstance(e, ev.CostUpdated)]
    assert cost and cost[-1].total_tokens == 120
    # the prompt carried what the model needs
    prompt = srv.requests[0]["messages"][1]["content"]
    assert "## train.py (current best version, editable)" in prompt and "LR = 0.01" in prompt
    assert "## prepare.py (read-only evaluator: never edit)" in prompt
    assert "val_bpb (minimize)" in prompt
    assert "You may edit ONLY these files: train.py" in srv.requests[0]["messages"][0]["content"]


def test_worse_edit_is_discarded(tmp_path):
    with ScriptedLLM([edit("bad LR", "LR = 0.01", "LR = 0.9")]) as srv:
        root = _repo(tmp_path, srv)
        _engine_run(root)
    assert jsonl_runs(root)[1]["status"] == "discard"
    assert "LR = 0.01" in (root / "train.py").read_text()


@pytest.mark.parametrize("bad,reason", [
    ({"content": "I think you should increase the learning rate."}, "no edits"),
    (edit("evaluator", "return x", "return 0", path="prepare.py"), "read-only evaluator"),
    (edit("other", "x", "y", path="utils.py"), "out of scope"),
    (edit("escape", "x", "y", path="../../etc/passwd"), "escapes the repository"),
    (edit("absolute", "x", "y", path="/etc/passwd"), "absolute path"),
    (edit("ambiguous", "print", "print"), "matches"),
    (edit("unmatched", "NOT_IN_FILE = 1", "X = 2"), "not found"),
    (edit("syntax", "WIDTH = 32", "WIDTH = (32"), "would not parse"),
])
def test_bad_answers_are_rejected_with_the_reason_fed_back(tmp_path, bad, reason):
    with ScriptedLLM([bad, edit("fixed", "DEPTH = 2", "DEPTH = 3")]) as srv:
        root = _repo(tmp_path, srv)
        eng, events = _engine_run(root)
    rejected = [e for e in events if isinstance(e, ev.ProposalRejected)]
    assert len(rejected) == 1 and reason in rejected[0].reason, rejected
    # the repair round told the model why
    assert reason.split()[0] in srv.requests[1]["messages"][1]["content"]
    assert "Your previous answer was rejected" in srv.requests[1]["messages"][1]["content"]
    recs = jsonl_runs(root)
    assert len(recs) == 2 and recs[1]["description"] == "fixed"
    # nothing rejected reached a commit
    subjects = git(root, "log", "--all", "--format=%s")
    assert "evaluator" not in subjects and "escape" not in subjects
    assert "return x" in (root / "prepare.py").read_text()


def test_duplicate_of_an_earlier_experiment_is_rejected(tmp_path):
    same = edit("narrow", "WIDTH = 32", "WIDTH = 20")  # worse: discarded, the best keeps WIDTH = 32
    with ScriptedLLM([same, edit("narrow again", "WIDTH = 32", "WIDTH   =   20"), edit("depth", "DEPTH = 2", "DEPTH = 3")]) as srv:
        root = _repo(tmp_path, srv, pipeline=False)
        eng, events = _engine_run(root, n=2)
    rejected = [e for e in events if isinstance(e, ev.ProposalRejected)]
    assert any("duplicates experiment #1" in e.reason for e in rejected)
    assert [r["description"] for r in jsonl_runs(root)] == ["baseline", "narrow", "depth"]


def test_three_rejections_end_as_a_failed_proposal_and_the_loop_goes_on(tmp_path):
    with ScriptedLLM([{"content": "no idea"}]) as srv:
        root = _repo(tmp_path, srv, max_failed_rounds=1)
        eng, events = _engine_run(root, n=1)
    failed = [e for e in events if isinstance(e, ev.ProposalFailed)]
    assert len(failed) == 1 and "3 proposals rejected" in failed[0].reason
    assert len(srv.requests) == 3  # repair_rounds = 2
    assert len(tsv_rows(root)) == 1  # only the baseline: nothing bad was run


def test_429_then_success(tmp_path):
    with ScriptedLLM([{"status": 429, "body": "slow down"}, {"status": 429}, edit("w", "WIDTH = 32", "WIDTH = 48")]) as srv:
        root = _repo(tmp_path, srv)
        _engine_run(root)
    assert len(srv.requests) == 3
    assert jsonl_runs(root)[1]["description"] == "w"


def test_500_forever_is_a_failed_proposal_and_the_app_lives(tmp_path):
    with ScriptedLLM([{"status": 500, "body": f"internal error for key {SENTINEL}"}]) as srv:
        root = _repo(tmp_path, srv, max_attempts=3, max_failed_rounds=1)
        eng, events = _engine_run(root, n=1)
    failed = [e for e in events if isinstance(e, ev.ProposalFailed)]
    assert len(failed) == 1 and "after 3 attempt(s)" in failed[0].reason
    assert SENTINEL not in failed[0].reason  # redacted
    assert len(srv.requests) == 3
    # a failed round is not an experiment: the session ends by max_failed_rounds, saying what to check
    assert eng.end_reason.startswith("the llm proposer failed 1 round in a row") and "api_base" in eng.end_reason


def test_slow_reply_past_the_deadline(tmp_path):
    with ScriptedLLM([{"delay": 3, **edit("late", "WIDTH = 32", "WIDTH = 48")}]) as srv:
        root = _repo(tmp_path, srv, request_timeout_s=0.5, max_attempts=2, max_failed_rounds=1)
        t0 = time.monotonic()
        eng, events = _engine_run(root, n=1)
    failed = [e for e in events if isinstance(e, ev.ProposalFailed)]
    assert failed and "no answer within 0.5 s" in failed[0].reason
    assert time.monotonic() - t0 < 30


def test_queued_idea_becomes_the_next_experiment_and_its_row_is_tagged(tmp_path):
    with ScriptedLLM([edit("try depth 3 as asked", "DEPTH = 2", "DEPTH = 3")]) as srv:
        root = _repo(tmp_path, srv)
        (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] try a deeper model\n")
        _engine_run(root)
    prompt = srv.requests[0]["messages"][1]["content"]
    assert "this experiment MUST implement it\ntry a deeper model" in prompt
    rec = jsonl_runs(root)[1]
    assert rec["idea"] == "try a deeper model"
    assert "[x] try a deeper model — #1 keep" in (root / "autoresearch.md").read_text()


def test_trivial_crash_gets_one_repair_attempt(tmp_path):
    with ScriptedLLM([
        edit("use helper", "WIDTH = 32", "WIDTH = helper(32)"),
        edit("use helper, fixed", "WIDTH = 32", "WIDTH = int(32)"),
        edit("depth", "DEPTH = 2", "DEPTH = 3"),
    ]) as srv:
        root = _repo(tmp_path, srv, pipeline=False)
        _engine_run(root, n=2)
    recs = jsonl_runs(root)
    assert recs[1]["status"] == "crash" and "NameError" in recs[1]["crash_reason"]
    assert "Fix the last experiment" in srv.requests[1]["messages"][1]["content"]
    assert recs[2]["repair_of"] == 1


def test_pipelining_prepares_the_next_proposal_while_the_run_trains(tmp_path):
    gate = Gate(tmp_path / "gate")  # every run waits at the gate until the test releases it
    replies = [edit("a", "DEPTH = 2", "DEPTH = 3"), edit("b", "WIDTH = 32", "WIDTH = 48"), edit("c", "LR = 0.01", "LR = 0.02")]
    with ScriptedLLM(replies) as srv:
        root = make_repo(tmp_path / "r", train=gate.script(), research={"time_budget_s": 120},
                         proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base})

        async def driver(eng, events):
            asked = []
            for n in range(4):
                await until(lambda: gate.arrived() > n, 60, f"run #{n} to start")
                if n < 3:
                    # run #n is still going (held at the gate): the proposal for #n+1 is asked for now
                    await until(lambda: len(srv.requests) >= n + 1, 30,
                                lambda: f"the request for experiment #{n + 1} while run #{n} trains (requests: {len(srv.requests)})")
                asked.append(len(srv.requests))
                assert not [e for e in events if isinstance(e, ev.RunFinished) and e.iteration == n]  # still going
                gate.release(n)
            return asked

        cfg = load_cfg(root)
        eng, events, asked = drive_engine(cfg, driver, proposer=LLMProposer(cfg), max_iterations=3)
    assert asked == [1, 2, 3, 3]  # one request ahead while each run trains; none after the last experiment
    assert [r["description"] for r in jsonl_runs(root)] == ["baseline", "a", "b", "c"]


def test_cost_cap_pauses_the_loop(tmp_path):
    # a model with a price in litellm's local cost map: the cap is reached after one proposal
    with ScriptedLLM([edit("w", "WIDTH = 32", "WIDTH = 48"), edit("d", "DEPTH = 2", "DEPTH = 3")]) as srv:
        root = make_repo(tmp_path / "r", proposer={"kind": "llm", "model": "openai/gpt-4o", "api_base": srv.base,
                                                   "max_cost_usd": 0.0000001, "pipeline": False})

        async def driver(eng, events):
            def paused_with_1_held():
                ready = [i for i, e in enumerate(events) if isinstance(e, ev.ProposalReady) and e.iteration == 1]
                return ready and any(isinstance(e, ev.PhaseChanged) and e.phase == ev.Phase.PAUSED for e in events[ready[0]:])

            # the proposal that reached the cap is kept for after the pause, not run: no new experiment starts
            await until(paused_with_1_held, 60, "the loop to pause with proposal #1 held")
            await asyncio.sleep(0.5)
            eng.stop_now()

        eng, events, _ = drive_engine(load_cfg(root), driver, max_iterations=3)
    assert any(isinstance(e, ev.Notice) and "cost cap reached" in e.text for e in events)
    assert eng.total_cost > 0
    assert len(srv.requests) == 1  # nothing was asked for past the cap
    assert [e.iteration for e in events if isinstance(e, ev.RunStarted)] == [0]
    assert eng.end_reason == "stopped by the user"


def test_sentinel_key_is_nowhere_on_disk_and_not_in_the_run_environment(tmp_path):
    train = TOY_TRAIN + "\nimport os\nprint('KEYS', [k for k in os.environ if 'KEY' in k])\n"
    with ScriptedLLM([{"status": 500, "body": f"bad key {SENTINEL}"}, edit("w", "WIDTH = 32", "WIDTH = 48")]) as srv:
        root = make_repo(tmp_path / "r", train=train, proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base,
                                                                "max_attempts": 1})
        _engine_run(root, n=2)
    assert {k.lower(): v for k, v in srv.headers[0].items()}["authorization"] == f"Bearer {SENTINEL}"  # it was used...
    for path in root.rglob("*"):
        if path.is_file():
            assert SENTINEL not in path.read_bytes().decode(errors="replace"), path  # ...and stored nowhere
    assert "KEYS []" in (root / "run.log").read_text()


def test_parse_answer_is_tolerant():
    text = ("Sure!\n**DESCRIPTION:** raise lr\n**HYPOTHESIS:** faster\n\nFile: `train.py`\n```python\n"
            "<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.02\n>>>>>>> REPLACE\n```\n")
    desc, hyp, edits = parse_answer(text, ["train.py"])
    assert desc == "raise lr" and hyp == "faster"
    assert [(e.path, e.search, e.replace) for e in edits] == [("train.py", "LR = 0.01", "LR = 0.02")]
    # no path line, one file in scope
    _, _, edits = parse_answer("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE", ["model.py"])
    assert edits[0].path == "model.py"
    # truncated / empty / huge answers parse to "no edits", never raise
    assert parse_answer("DESCRIPTION: x\n<<<<<<< SEARCH\nLR = 1\n===", ["train.py"])[2] == []
    assert parse_answer("", ["train.py"]) == ("", "", [])
    assert parse_answer("x" * 2_000_000, ["train.py"])[2] == []


def test_redact_hides_keys():
    env = {"OPENAI_API_KEY": SENTINEL, "PATH": "/usr/bin"}
    assert redact(f"error: {SENTINEL} at /usr/bin", env) == "error: *** at /usr/bin"
    assert "***" in redact("Authorization: Bearer abcdefghijklmnop", {})
    assert "sk-" not in redact("key sk-abcdefghijklmnopqrstu", {})


def test_litellm_is_not_imported_by_the_engine_or_the_tui_start():
    import subprocess
    import sys

    mods = ["autoresearch_tui.ui.app", "autoresearch_tui.engine.session", "autoresearch_tui.proposers"]
    code = (f"import importlib, json, sys\nfor m in {mods!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('autoresearch_tui', 'litellm'))))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout)
    assert set(mods) <= set(loaded), loaded  # they were imported...
    assert not [m for m in loaded if m.split(".")[0] == "litellm"], loaded  # ...and litellm was not
