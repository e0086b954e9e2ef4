"""Tolerant answers: SEARCH/REPLACE, a unified diff, a whole file, `NAME = value` lines — each
parsed from a real model answer over HTTP and validated like any edit before it is committed."""

from __future__ import annotations

import pytest
from conftest import TOY_TRAIN, git, jsonl_runs, load_cfg, make_repo, run_engine
from llm_server import ScriptedLLM, edit

from autoresearch_tui.engine import events as ev
from autoresearch_tui.proposers.answers import parse_answer
from autoresearch_tui.proposers.edits import Rejected, apply_edits
from autoresearch_tui.proposers.llm import LLMProposer

FILES = {"train.py": TOY_TRAIN}
SCOPE = ["train.py"]

DIFF = """DESCRIPTION: narrower model
HYPOTHESIS: fewer parameters fit the budget

```diff
--- a/train.py
+++ b/train.py
@@ -2,3 +2,3 @@
 LR = 0.01
-WIDTH = 32
+WIDTH = 16
 DEPTH = 2
```
"""
WHOLE = ("Here is the updated file, with a shallower model:\n\ntrain.py\n```python\n"
         + TOY_TRAIN.replace("DEPTH = 2", "DEPTH = 1") + "```\n")
ASSIGN = "I would sleep a little between steps:\n\n    SLEEP = 0.01  # seconds\n\nThat should be all."


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-answers-test-0000")


def test_every_accepted_format_becomes_a_validated_experiment(tmp_path):
    # four answers, four forms; each change is worse or neutral (discarded), so each applies to the same file
    replies = [edit("lower LR", "LR = 0.01", "LR = 0.005"), {"content": DIFF}, {"content": WHOLE}, {"content": ASSIGN}]
    with ScriptedLLM(replies) as srv:
        root = make_repo(tmp_path / "r", proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base,
                                                   "pipeline": False, "fallback": "none"})
        cfg = load_cfg(root)
        eng, events = run_engine(cfg, proposer=LLMProposer(cfg), max_iterations=4)
    assert not [e for e in events if isinstance(e, ev.ProposalRejected)]
    recs = jsonl_runs(root)[1:]
    assert [r["description"] for r in recs] == ["lower LR", "narrower model", "Here is the updated file, with a shallower model:",
                                               "SLEEP 0.0 -> 0.01"]
    changes = [git(root, "diff", r["parent"], r["commit"]) for r in recs]
    assert "-LR = 0.01\n+LR = 0.005" in changes[0]
    assert "-WIDTH = 32\n+WIDTH = 16" in changes[1]
    added = [ln for ln in changes[2].splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert "-DEPTH = 2\n+DEPTH = 1" in changes[2] and added == ["+DEPTH = 1"]  # only that line changed
    assert "-SLEEP = 0.0\n+SLEEP = 0.01" in changes[3]
    assert all(r["status"] in ("discard", "keep") for r in recs)


def test_unified_diff_without_headers_and_several_hunks():
    text = "@@ -1 +1 @@\n-LR = 0.01\n+LR = 0.02\n@@\n DEPTH = 2\n-MODE = \"ok\"\n+MODE = \"fast\"\n"
    desc, _, edits = parse_answer(text, SCOPE, FILES)
    assert [(e.path, e.search, e.replace) for e in edits] == [
        ("train.py", "LR = 0.01", "LR = 0.02"), ("train.py", 'DEPTH = 2\nMODE = "ok"', 'DEPTH = 2\nMODE = "fast"')]
    changed = apply_edits(FILES, edits, __import__("pathlib").Path("/nonexistent"), SCOPE, ["prepare.py"])
    assert 'MODE = "fast"' in changed["train.py"] and "LR = 0.02" in changed["train.py"]
    assert desc == ""  # no prose: the gate names it "(no description)"


def test_a_diff_of_the_evaluator_is_still_rejected():
    text = "--- a/prepare.py\n+++ b/prepare.py\n@@ -2 +2 @@\n def evaluate(x):\n-    return x\n+    return 0\n"
    _, _, edits = parse_answer(text, SCOPE, FILES)
    assert edits[0].path == "prepare.py"
    with pytest.raises(Rejected, match="read-only evaluator"):
        apply_edits({**FILES, "prepare.py": "def evaluate(x):\n    return x\n"}, edits, __import__("pathlib").Path("/x"), SCOPE,
                    ["prepare.py"])


def test_a_snippet_or_an_elided_file_is_not_taken_for_the_whole_file():
    snippet = "train.py\n```python\nWIDTH = 48\n```\n"
    _, _, edits = parse_answer(snippet, SCOPE, FILES)  # too short for the file: read as a NAME = value line
    assert [(e.search, e.replace) for e in edits] == [("WIDTH = 32", "WIDTH = 48")]
    # "# ... rest unchanged" in place of code: never the whole file (it would delete that code);
    # only its changed constant line is read
    elided = "```python\n" + TOY_TRAIN.replace("DEPTH = 2", "DEPTH = 4").replace('MODE = "ok"\n', "# ... rest unchanged\n") + "```"
    assert [(e.search, e.replace) for e in parse_answer(elided, SCOPE, FILES)[2]] == [("DEPTH = 2", "DEPTH = 4")]


def test_name_value_lines_only_for_module_level_constants_assigned_once():
    files = {"train.py": "LR = 0.01\nSTEPS = 10\nfor step in range(3):\n    pass\nSTEPS = STEPS * 2\nx = LR\n"
                         "BATCH = 2 ** 5  # tokens\n"}
    text = "Try these:\n- `LR = 0.03`\n- STEPS = 20\n- step = 5\n- LR == 0.5\n- x = LR + 1\n- BATCH = 2 ** 6"
    desc, _, edits = parse_answer(text, SCOPE, files)
    # STEPS is rebound later, `step` is a loop variable, x is no constant: not settings; BATCH's comment is kept
    assert [(e.search, e.replace) for e in edits] == [("LR = 0.01", "LR = 0.03"), ("BATCH = 2 ** 5  # tokens", "BATCH = 2 ** 6  # tokens")]
    assert desc == "LR 0.01 -> 0.03, BATCH 2 ** 5 -> 2 ** 6"
    # the value it already has, or prose around the name, is no edit
    assert parse_answer("LR = 0.01", SCOPE, files)[2] == []
    assert parse_answer("set LR = 0.03 please", SCOPE, files)[2] == []
