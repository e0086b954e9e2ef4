"""The loop on real git repositories and real child processes."""

from __future__ import annotations

import re

from conftest import TOY_TRAIN, cli, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows

from autoresearch_tui.engine import events as ev
from autoresearch_tui.proposers.base import Edit, Proposal, ProposalContext, Proposer


class ScriptedProposer(Proposer):
    """A real proposer plugged into the engine's interface, answering from a script."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.contexts: list[ProposalContext] = []

    async def propose(self, ctx):
        self.contexts.append(ctx)
        if not self.answers:
            from autoresearch_tui.proposers.base import ProposalError

            raise ProposalError("script exhausted", exhausted=True, retryable=False)
        desc, edits = self.answers.pop(0)
        return Proposal(desc, [Edit(*e) for e in edits])


def test_headless_five_iterations_rows_branch_head_and_refs(repo):
    p = cli(repo, "--headless", "--max-iterations", "5")
    assert p.returncode == 0, p.stderr
    rows = tsv_rows(repo)
    assert len(rows) == 6
    assert rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"
    assert all(r["status"] in ("keep", "discard", "crash") for r in rows)
    # the branch head is the best kept experiment
    recs = jsonl_runs(repo)
    keeps = [r for r in recs if r["status"] == "keep"]
    best = min(keeps, key=lambda r: r["metric"])
    assert git(repo, "rev-parse", "autoresearch/t1").strip() == best["commit"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t1"
    # every experiment has its ref, pointing at its commit
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/autoresearch/t1").split("\n")
    refmap = dict(line.split() for line in refs if line)
    for r in recs:
        assert refmap[f"refs/autoresearch/t1/{r['iteration']}"] == r["commit"]
    # main was never touched
    assert git(repo, "log", "--oneline", "main").count("\n") == 1
    # progress + completion summary printed
    assert "=== Autoresearch Complete (5 iterations) ===" in p.stdout
    assert (repo / "autoresearch-summary.md").exists()


def test_results_tsv_byte_format(repo):
    cfg = load_cfg(repo)
    run_engine(cfg, max_iterations=2)
    text = (repo / "results.tsv").read_bytes().decode()
    lines = text.split("\n")
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert text.endswith("\n")
    row = re.compile(r"^[0-9a-f]{7}\t-?\d+\.\d{6}\t\d+\.\d\t(keep|discard|crash)\t[^\t\n]*$")
    for ln in lines[1:-1]:
        assert row.match(ln), ln
    assert lines[1] == f"{git(repo, 'rev-parse', '--short=7', 'refs/autoresearch/t1/0').strip()}\t2.124000\t0.5\tkeep\tbaseline"


def test_discard_moves_branch_back_and_keeps_experiment_ref(repo):
    cfg = load_cfg(repo)
    prop = ScriptedProposer([("worse LR", [("train.py", "LR = 0.01", "LR = 0.5")])])
    eng, events = run_engine(cfg, proposer=prop, max_iterations=1)
    recs = jsonl_runs(repo)
    assert [r["status"] for r in recs] == ["keep", "discard"]
    assert git(repo, "rev-parse", "HEAD").strip() == recs[0]["commit"]
    assert "LR = 0.01" in (repo / "train.py").read_text()
    # the discarded diff is still retrievable through its ref
    diff = git(repo, "diff", "refs/autoresearch/t1/0", "refs/autoresearch/t1/1")
    assert "+LR = 0.5" in diff
    assert (recs[1]["lines_added"], recs[1]["lines_removed"]) == (1, 1)
    decisions = [e for e in events if isinstance(e, ev.Decision)]
    assert decisions[-1].record.status == "discard"


def _crash_case(tmp_path, train_tail, expect):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN + "\nimport os\nif MODE != 'ok':\n" + train_tail)
    cfg = load_cfg(root)
    prop = ScriptedProposer([("break it", [("train.py", 'MODE = "ok"', 'MODE = "bad"')])])
    run_engine(cfg, proposer=prop, max_iterations=1)
    rows = tsv_rows(root)
    assert rows[1]["status"] == "crash"
    assert rows[1]["val_bpb"] == "0.000000"
    assert rows[1]["memory_gb"] in ("0.0", "0.5")
    rec = jsonl_runs(root)[1]
    assert expect in rec["crash_reason"], rec["crash_reason"]
    assert git(root, "rev-parse", "HEAD").strip() == jsonl_runs(root)[0]["commit"]
    return rec


def test_crash_on_nonzero_exit(tmp_path):
    rec = _crash_case(tmp_path, "    raise RuntimeError('boom')\n", "exit code 1")
    assert "RuntimeError: boom" in rec["crash_reason"]
    assert rec["exit_code"] == 1


def test_crash_on_missing_metric(tmp_path):
    # prints everything except the metric line: rewrite stdout through a filter
    tail = "    import builtins\n    _p = builtins.print\n    builtins.print = lambda *a, **k: None if a and 'val_bpb' in str(a[0]) else _p(*a, **k)\n"
    src = TOY_TRAIN.replace('MODE = "ok"\n', 'MODE = "ok"\n' + "if MODE != 'ok':\n" + tail)
    root = make_repo(tmp_path / "r", train=src)
    cfg = load_cfg(root)
    prop = ScriptedProposer([("drop the metric", [("train.py", 'MODE = "ok"\n', 'MODE = "bad"\n')])])
    run_engine(cfg, proposer=prop, max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash"
    assert "never printed" in rec["crash_reason"]


def test_crash_on_nan_metric(tmp_path):
    src = TOY_TRAIN.replace('print(f"val_bpb:          {val:.6f}")', 'print(f"val_bpb:          {float(\'nan\') if MODE != \'ok\' else val:.6f}")')
    root = make_repo(tmp_path / "r", train=src)
    cfg = load_cfg(root)
    prop = ScriptedProposer([("nan", [("train.py", 'MODE = "ok"', 'MODE = "bad"')])])
    run_engine(cfg, proposer=prop, max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash" and "not finite" in rec["crash_reason"]


def test_scope_violation_rejected_before_running(repo):
    cfg = load_cfg(repo)
    prop = ScriptedProposer([
        ("edit the evaluator", [("prepare.py", "return x", "return 0")]),
        ("escape", [("../outside.py", "x", "y")]),
        ("absolute", [("/etc/passwd", "root", "toor")]),
    ])
    eng, events = run_engine(cfg, proposer=prop, max_iterations=1)
    rejected = [e for e in events if isinstance(e, ev.ProposalRejected)]
    assert len(rejected) == 3
    assert "read-only" in rejected[0].reason
    assert "escapes" in rejected[1].reason
    assert "absolute" in rejected[2].reason
    # nothing was committed or run beyond the baseline
    assert len(tsv_rows(repo)) == 1
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
    assert "return x" in (repo / "prepare.py").read_text()
    assert [e for e in events if isinstance(e, ev.RunStarted)][-1].iteration == 0


def test_duplicate_change_rejected(repo):
    cfg = load_cfg(repo)
    same = ("train.py", "LR = 0.01", "LR = 0.5")
    prop = ScriptedProposer([("a", [same]), ("a again", [("train.py", "LR = 0.01", "LR  =  0.5")])])
    eng, events = run_engine(cfg, proposer=prop, max_iterations=2)
    rejected = [e for e in events if isinstance(e, ev.ProposalRejected)]
    assert rejected and "duplicates experiment #1" in rejected[0].reason
    assert len(tsv_rows(repo)) == 2


def test_guard_failure_discards_an_improvement(tmp_path):
    root = make_repo(tmp_path / "r", research={"guard_command": "false"})
    cfg = load_cfg(root)
    prop = ScriptedProposer([("better", [("train.py", "WIDTH = 32", "WIDTH = 64")])])
    run_engine(cfg, proposer=prop, max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["metric"] < jsonl_runs(root)[0]["metric"]
    assert rec["status"] == "discard" and "guard failed" in rec["discard_reason"]


def test_min_delta_and_maximize(tmp_path):
    root = make_repo(tmp_path / "r", metric={"direction": "maximize", "min_delta": 0.01})
    cfg = load_cfg(root)
    # DEPTH 2 -> 3 lowers val by 0.01 (worse when maximizing); WIDTH 32 -> 16 raises it by 1.024-0.232
    prop = ScriptedProposer([
        ("depth", [("train.py", "DEPTH = 2", "DEPTH = 3")]),
        ("narrow", [("train.py", "WIDTH = 32", "WIDTH = 16")]),
    ])
    run_engine(cfg, proposer=prop, max_iterations=2)
    assert [r["status"] for r in jsonl_runs(root)] == ["keep", "discard", "keep"]


def test_secrets_scrubbed_from_run_environment(tmp_path):
    src = TOY_TRAIN + "\nimport os, re\nprint('ENV', sorted(k for k in os.environ if re.search(r'(^|_)(KEY|TOKEN|SECRET)(_|$)', k)))\nprint('BUDGET', os.environ['AUTORESEARCH_TIME_BUDGET'])\n"
    root = make_repo(tmp_path / "r", train=src)
    p = cli(root, "--headless", "--max-iterations", "1",
            env={"OPENAI_API_KEY": "sk-SENTINEL-123", "HF_TOKEN": "hf-SENTINEL", "MY_SERVICE_SECRET": "s3"})
    assert p.returncode == 0, p.stderr
    log = (root / "run.log").read_text()
    assert "ENV []" in log and "BUDGET 5" in log
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert "SENTINEL" not in path.read_text(errors="replace"), path


def test_run_log_is_current_and_per_run_logs_are_kept(repo):
    cfg = load_cfg(repo)
    run_engine(cfg, max_iterations=2)
    logs = sorted((repo / ".autoresearch" / "logs").glob("*.log"))
    assert [p.name for p in logs] == ["00000.log", "00001.log", "00002.log"]
    assert (repo / "run.log").read_bytes() == logs[-1].read_bytes()
    # the tool's files stay out of git
    status = git(repo, "status", "--porcelain")
    assert status.strip() == "", status


def test_three_non_improving_experiments_notice_names_no_temperature_for_the_offline_proposer(tmp_path):
    # the metric ignores every constant: each experiment is a discard
    flat = TOY_TRAIN.replace("val = 1.0 + (LR - 0.04) ** 2 * 100 + ((WIDTH - 64) ** 2) / 1000 + abs(DEPTH - 3) * 0.01", "val = 1.0")
    assert flat != TOY_TRAIN
    root = make_repo(tmp_path / "r", train=flat)
    eng, events = run_engine(load_cfg(root), max_iterations=4)
    assert [e.record.status for e in events if isinstance(e, ev.Decision)] == ["keep", "discard", "discard", "discard", "discard"]
    said = [e.text for e in events if isinstance(e, ev.Notice) and "did not improve" in e.text]
    assert len(said) == 1, said
    assert "temperature" not in said[0] and "mutate proposer" in said[0], said[0]
