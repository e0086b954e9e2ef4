"""A run is untrusted code: each test is a real hostile training script in a real repository,
and asserts what leaked, what was recorded and what was undone. (Sandbox: test_sandbox.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conftest import PY, ROOT, TOY_TRAIN, cli, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows
from test_engine_loop import ScriptedProposer

EVIL = [("evil", [("train.py", 'MODE = "ok"', 'MODE = "evil"')])]
BENIGN = ("wider", [("train.py", "WIDTH = 32", "WIDTH = 48")])


def hostile(attack: str) -> str:
    """The toy script with `attack` run (before the metric) when MODE is "evil"."""
    body = "\n".join("    " + ln for ln in attack.strip("\n").splitlines())
    return TOY_TRAIN.replace('print("---")', 'if MODE == "evil":\n' + body + '\nprint("---")', 1)


def notices(events) -> list[str]:
    return [e.text for e in events if type(e).__name__ == "Notice"]


def test_git_hooks_and_config_planted_by_a_run_never_run_and_are_undone(tmp_path, monkeypatch):
    loot = tmp_path / "loot.txt"
    hook = f"#!/bin/sh\nenv >> {loot}\n"
    attack = f"""
import subprocess, pathlib
h = pathlib.Path('.git/hooks')
for name in ('post-commit', 'pre-commit', 'reference-transaction', 'post-checkout', 'post-rewrite'):
    (h / name).write_text({hook!r}); (h / name).chmod(0o755)
subprocess.run(['git', 'config', 'core.hooksPath', '.git/hooks'])
subprocess.run(['git', 'config', 'core.fsmonitor', {str(tmp_path / 'fsm.sh')!r}])
"""
    (tmp_path / "fsm.sh").write_text(f"#!/bin/sh\nenv >> {loot}\n")
    (tmp_path / "fsm.sh").chmod(0o755)
    root = make_repo(tmp_path / "r", train=hostile(attack))
    config_before = (root / ".git" / "config").read_bytes()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-hook")
    _, events = run_engine(load_cfg(root), proposer=ScriptedProposer([*EVIL, BENIGN]), max_iterations=2)
    runs = jsonl_runs(root)
    assert [r["status"] for r in runs] == ["keep", "crash", "keep"]
    assert runs[1]["crash_kind"] == "tampering" and "post-commit" in runs[1]["crash_reason"], runs[1]
    assert not loot.exists(), loot.read_text()[:300]  # no hook or fsmonitor of the run ever ran
    assert (root / ".git" / "config").read_bytes() == config_before
    assert not (root / ".git" / "hooks" / "post-commit").exists()


def test_run_that_commits_elsewhere_or_adds_refs_is_a_crash_and_undone(tmp_path):
    attack = """
import subprocess
subprocess.run('git tag evil-tag && git branch evil-branch && git update-ref refs/heads/main HEAD', shell=True)
"""
    root = make_repo(tmp_path / "r", train=hostile(attack))
    main_before = git(root, "rev-parse", "main").strip()
    run_engine(load_cfg(root), proposer=ScriptedProposer([*EVIL, BENIGN]), max_iterations=2)
    runs = jsonl_runs(root)
    assert [r["status"] for r in runs] == ["keep", "crash", "keep"]
    assert "refs/heads/main" in runs[1]["crash_reason"] and "created refs/tags/evil-tag" in runs[1]["crash_reason"]
    assert git(root, "rev-parse", "main").strip() == main_before
    assert git(root, "tag").strip() == "" and "evil-branch" not in git(root, "branch")
    # the experiments' refs still name their records' commits
    for r in runs:
        assert git(root, "rev-parse", r["ref"]).strip() == r["commit"]


def test_evaluator_edited_used_and_restored_during_the_run_is_a_crash(tmp_path):
    attack = """
import pathlib, importlib, time
p = pathlib.Path('prepare.py'); orig = p.read_bytes()
p.write_text('def evaluate(x):\\n    return 0.0\\n')
import prepare; importlib.reload(prepare)
val = prepare.evaluate(val)
time.sleep(0.05)
p.write_bytes(orig)
"""
    root = make_repo(tmp_path / "r", train=hostile(attack))
    run_engine(load_cfg(root), proposer=ScriptedProposer(EVIL), max_iterations=1)
    runs = jsonl_runs(root)
    assert runs[1]["status"] == "crash", runs[1]  # its fake 0.0 would have been the best
    assert "while it ran" in runs[1]["crash_reason"]
    assert tsv_rows(root)[1]["status"] == "crash"


def test_deleting_the_lock_lets_no_second_instance_in(tmp_path):
    out = tmp_path / "second.txt"
    attack = f"""
import os, pathlib, subprocess, sys
os.remove('.autoresearch/lock')
p = subprocess.run([sys.executable, '-m', 'autoresearch_tui', '--headless', '--max-iterations', '1'],
                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
pathlib.Path({str(out)!r}).write_text(str(p.returncode) + '\\n' + p.stderr)
"""
    root = make_repo(tmp_path / "r", train=hostile(attack))
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    try:
        run_engine(load_cfg(root), proposer=ScriptedProposer(EVIL), max_iterations=1)
    finally:
        os.environ["PYTHONPATH"] = env_path
    rc, _, err = out.read_text().partition("\n")
    assert rc == "2" and "another autoresearch-tui" in err, err
    runs = jsonl_runs(root)
    assert [r["iteration"] for r in runs] == [0, 1]  # nobody else recorded anything
    assert "lock" in runs[1]["crash_reason"]


def test_records_deleted_by_a_run_are_restored_and_numbers_never_reused(tmp_path):
    attack = """
import os
os.remove('results.tsv')
open('.autoresearch/runs.jsonl', 'w').close()
"""
    root = make_repo(tmp_path / "r", train=hostile(attack))
    run_engine(load_cfg(root), proposer=ScriptedProposer([BENIGN, *EVIL]), max_iterations=2)
    runs = jsonl_runs(root)
    assert [r["iteration"] for r in runs] == [0, 1, 2]
    assert runs[2]["status"] == "crash" and "records" in runs[2]["crash_reason"]
    rows = tsv_rows(root)
    assert [r["description"] for r in rows] == ["baseline", "wider", "evil"]
    # a restart: no new baseline, the next number is 3, no row doubled
    run_engine(load_cfg(root), proposer=ScriptedProposer([("deeper", [("train.py", "DEPTH = 2", "DEPTH = 3")])]), max_iterations=1)
    assert [r["iteration"] for r in jsonl_runs(root)] == [0, 1, 2, 3]
    assert [r["description"] for r in tsv_rows(root)] == ["baseline", "wider", "evil", "deeper"]


def test_truncated_runs_jsonl_is_reported_rows_kept_and_numbers_taken_from_refs(tmp_path):
    root = make_repo(tmp_path / "r")
    run_engine(load_cfg(root), max_iterations=2)
    jl = root / ".autoresearch" / "runs.jsonl"
    lines = jl.read_text().splitlines(keepends=True)
    jl.write_text(lines[0])  # only the baseline's record is left
    ref2 = git(root, "rev-parse", "refs/autoresearch/t1/2").strip()
    _, events = run_engine(load_cfg(root), max_iterations=1)
    said = " ".join(notices(events))
    assert "missing" in said or "adopted" in said, said
    runs = jsonl_runs(root)
    nums = [r["iteration"] for r in runs]
    assert len(nums) == len(set(nums)) and nums[-1] == 3, nums
    assert git(root, "rev-parse", "refs/autoresearch/t1/2").strip() == ref2  # #2's ref was not overwritten
    rows = tsv_rows(root)
    assert len(rows) == 4 and rows[0]["description"] == "baseline"
    assert sum(r["description"] == "baseline" for r in rows) == 1


def test_sighup_ignored_by_nohup_stays_ignored_in_headless(tmp_path):
    train = TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 1.5")
    root = make_repo(tmp_path / "r", train=train)
    p = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "1"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.time() + 30
    while not (root / "run.log").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert [r["status"] for r in jsonl_runs(root)][:1] == ["keep"] and len(jsonl_runs(root)) == 2


def test_escape_sequences_reach_no_row_commit_or_record(tmp_path):
    esc = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[31m"
    root = make_repo(tmp_path / "r", train=TOY_TRAIN)
    desc = f"wide{esc}r"
    run_engine(load_cfg(root), proposer=ScriptedProposer([(desc, [("train.py", "WIDTH = 32", "WIDTH = 48")])]), max_iterations=1)
    rows = (root / "results.tsv").read_text()
    assert "\x1b" not in rows and "\x07" not in rows and "wider" in rows
    assert "\x1b" not in git(root, "log", "--format=%B", "-3")
    assert all("\x1b" not in json.dumps(r) and "\\u001b" not in json.dumps(r) for r in jsonl_runs(root))


def test_crash_tail_has_no_escapes_and_no_secret_values(tmp_path, monkeypatch):
    attack = """
print('\\x1b]0;pwned\\x07\\x1b[2J leaked:', open('/proc/self/environ').read().count('SENTINEL'), 'sk-SENTINEL-tail')
raise SystemExit(3)
"""
    root = make_repo(tmp_path / "r", train=hostile(attack))
    monkeypatch.setenv("MYTOKEN", "sk-SENTINEL-tail")
    run_engine(load_cfg(root), proposer=ScriptedProposer(EVIL), max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash"
    assert "leaked: 0" in rec["error_tail"]  # MYTOKEN (contains TOKEN) never reached the run
    assert "\x1b" not in rec["error_tail"] and "sk-SENTINEL-tail" not in rec["error_tail"]
    assert "[redacted]" in rec["error_tail"]


def test_keep_env_passes_a_named_secret(tmp_path, monkeypatch):
    train = TOY_TRAIN + "\nimport os\nprint('WANDB', os.environ.get('WANDB_API_KEY'), os.environ.get('OTHER_KEY'))\n"
    root = make_repo(tmp_path / "r", train=train, research={"keep_env": ["WANDB_API_KEY"]})
    monkeypatch.setenv("WANDB_API_KEY", "wk")
    monkeypatch.setenv("OTHER_KEY", "ok")
    run_engine(load_cfg(root), proposer=ScriptedProposer([]), max_iterations=1)
    assert "WANDB wk None" in (root / "run.log").read_text()


def test_log_flood_is_capped_and_a_metric_printed_before_it_is_found(tmp_path):
    train = TOY_TRAIN.replace('print("training_seconds: 0.1")', 'print("training_seconds: 0.1")\n'
                              'import sys\nfor _ in range(200):\n    sys.stdout.write("x" * 99999 + "\\n")\n')
    root = make_repo(tmp_path / "r", train=train, research={"log_max_mb": 1})
    run_engine(load_cfg(root), proposer=ScriptedProposer([]), max_iterations=1)
    runs = jsonl_runs(root)
    assert runs[0]["status"] == "keep" and runs[0]["metric"] is not None
    size = (root / ".autoresearch" / "logs" / "00000.log").stat().st_size
    assert size < 2 * 1024 * 1024, size  # 20 MB were printed
    assert b"cut here" in (root / ".autoresearch" / "logs" / "00000.log").read_bytes()


def test_absurd_metrics_are_crashes_never_a_best(tmp_path):
    root = make_repo(tmp_path / "r")
    prop = ScriptedProposer([("tiny", [("train.py", 'print(f"val_bpb:          {val:.6f}")', 'print("val_bpb: -1e308")')]),
                             ("inf", [("train.py", 'print(f"val_bpb:          {val:.6f}")', 'print("val_bpb: 1e999")')])])
    run_engine(load_cfg(root), proposer=prop, max_iterations=2)
    runs = jsonl_runs(root)
    assert [r["status"] for r in runs] == ["keep", "crash", "crash"]
    assert "absurd" in runs[1]["crash_reason"]


def _check(root, **research) -> subprocess.CompletedProcess:
    import tomllib

    import tomli_w

    cfg = tomllib.loads((root / "autoresearch.toml").read_text())
    cfg["research"].update(research)
    (root / "autoresearch.toml").write_text(tomli_w.dumps(cfg))
    return cli(root, "check")


def test_check_rejects_what_would_break_a_session(tmp_path):
    root = make_repo(tmp_path / "r")
    cases = {
        "time_budget_s": ({"time_budget_s": float("inf")}, "finite"),
        "branch_tag": ({"branch_tag": "a..b"}, "check-ref-format"),
        "results_file": ({"results_file": ".git/results.tsv"}, "results_file"),
        "results_file ": ({"results_file": "prepare.py"}, "results_file"),
        "command": ({"command": "nosuchprog-xyz train.py"}, "nosuchprog-xyz"),
    }
    for key, (over, word) in cases.items():
        p = _check(root, **{"results_file": "results.tsv", "branch_tag": "t1", "time_budget_s": 5,
                            "command": f"{PY} train.py", **over})
        assert p.returncode == 2, (key, p.stdout, p.stderr)
        assert word in (p.stderr + p.stdout) and "Traceback" not in p.stderr, (key, p.stderr)
    # a real shell command line passes
    p = _check(root, command=f"env > env.txt; {PY} train.py", time_budget_s=5, results_file="results.tsv")
    assert p.returncode == 0, p.stderr + p.stdout
    # an api_base that does not parse; a tracked results file; a latin-1 train.py
    import tomllib

    import tomli_w

    cfg = tomllib.loads((root / "autoresearch.toml").read_text())
    cfg["proposer"]["api_base"] = "http://[::1"
    (root / "autoresearch.toml").write_text(tomli_w.dumps(cfg))
    p = cli(root, "check")
    assert p.returncode == 2 and "api_base" in p.stderr and "Traceback" not in p.stderr, p.stderr
    del cfg["proposer"]["api_base"]
    (root / "autoresearch.toml").write_text(tomli_w.dumps(cfg))
    (root / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n")
    git(root, "add", "-f", "results.tsv")
    (root / "train.py").write_bytes((root / "train.py").read_bytes() + "# caf\xe9\n".encode("latin-1"))
    git(root, "commit", "-qam", "latin1 + tracked results")
    p = cli(root, "check")
    assert p.returncode == 2
    assert "tracked" in p.stderr + p.stdout and "UTF-8" in p.stderr + p.stdout, p.stderr + p.stdout


def test_nan_in_a_numeric_key_is_one_line_exit_2(tmp_path):
    root = make_repo(tmp_path / "r")
    text = (root / "autoresearch.toml").read_text().replace("[metric]\n", "[metric]\nmin_delta = nan\n")
    (root / "autoresearch.toml").write_text(text)
    p = cli(root, "check")
    assert p.returncode == 2 and "min_delta" in p.stderr and "finite" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_app_git_commands_run_no_repository_hook_and_carry_no_secret(tmp_path, monkeypatch):
    from autoresearch_tui.engine.ledger import Ledger

    loot = tmp_path / "loot.txt"
    root = make_repo(tmp_path / "r")
    for name in ("pre-commit", "post-commit", "reference-transaction", "post-checkout", "commit-msg"):
        h = root / ".git" / "hooks" / name
        h.write_text(f"#!/bin/sh\nenv >> {loot}\n")
        h.chmod(0o755)
    (tmp_path / "fsm.sh").write_text(f"#!/bin/sh\nenv >> {loot}\n")
    (tmp_path / "fsm.sh").chmod(0o755)
    git(root, "config", "core.fsmonitor", str(tmp_path / "fsm.sh"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-git")
    led = Ledger(root, "t1")
    assert "OPENAI_API_KEY" not in led._env
    led.start_or_resume()
    (root / "train.py").write_text((root / "train.py").read_text() + "# x\n")
    sha = led.commit_files(["train.py"], "x")
    led.set_ref(1, sha)
    led.status()
    led.reset_hard(sha)
    assert not loot.exists(), loot.read_text()[:200]
