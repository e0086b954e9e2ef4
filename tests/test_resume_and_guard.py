"""Evaluator guard, resume after kill -9, the instance lock, partial-line recovery, overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from conftest import PY, TOY_TRAIN, Gate, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows, wait_until
from test_engine_loop import ScriptedProposer

from autoresearch_tui.engine import runner
from autoresearch_tui.engine.results import ResultsStore


def test_evaluator_tampering_at_run_time_is_detected_and_restored(tmp_path):
    src = TOY_TRAIN + "\nif MODE == 'tamper':\n    open('prepare.py', 'a').write('\\ndef evaluate(x):\\n    return 0\\n')\n"
    root = make_repo(tmp_path / "r", train=src)
    cfg = load_cfg(root)
    prop = ScriptedProposer([("tamper", [("train.py", 'MODE = "ok"', 'MODE = "tamper"')])])
    run_engine(cfg, proposer=prop, max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash"
    assert "modified the read-only evaluator (prepare.py)" in rec["crash_reason"]
    assert "return 0" not in (root / "prepare.py").read_text()
    assert git(root, "status", "--porcelain").strip() == ""


def test_evaluator_edited_before_a_run_is_restored_first(tmp_path):
    root = make_repo(tmp_path / "r")
    cfg = load_cfg(root)

    def on_event(eng, e):
        from autoresearch_tui.engine.events import ProposalReady

        if isinstance(e, ProposalReady):
            (root / "prepare.py").write_text("def evaluate(x):\n    return -1\n")

    prop = ScriptedProposer([("w", [("train.py", "WIDTH = 32", "WIDTH = 64")])])
    eng, events = run_engine(cfg, proposer=prop, max_iterations=1, on_event=on_event)
    assert "return x" in (root / "prepare.py").read_text()
    assert jsonl_runs(root)[1]["status"] == "keep"


def _start_headless(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


class Lines:
    """The stdout of a running app, read line by line in a thread (so a test can wait for a line)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: any(text in ln for ln in self.lines), timeout, lambda: f"{text!r} on stdout; got {self.lines}")


def _wait_inflight(root: Path, iteration: int, timeout: float = 60) -> dict:
    def inflight():
        try:
            st = json.loads((root / ".autoresearch" / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return (st.get("inflight_runs") or {}).get(str(iteration))

    return wait_until(inflight, timeout, f"experiment #{iteration} to be recorded as in flight")


def _ideas_repo(tmp_path) -> tuple[Path, Gate]:
    gate = Gate(tmp_path / "gate")
    # the first experiment (MODE=slow, the user's order, which the loop runs next) waits at the gate
    # until the test opens it; the baseline (MODE "ok") goes through
    root = make_repo(tmp_path / "r", train=gate.script(when="MODE != 'ok'"), research={"time_budget_s": 120})
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] MODE=slow\n")
    return root, gate


def _kill_9_during_experiment_1(tmp_path) -> tuple[Path, runner.RunHandle, Gate]:
    """Start a session, SIGKILL the app while experiment #1 runs (held at the gate); return the
    repo, the run and the gate."""
    root, gate = _ideas_repo(tmp_path)
    app = _start_headless(root, "--max-iterations", "2")
    try:
        inflight = _wait_inflight(root, 1)
        gate.wait_arrived(0)
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    return root, runner.RunHandle.from_state(inflight), gate


def test_resume_reattaches_a_run_that_outlived_a_kill_9(tmp_path):
    root, h, gate = _kill_9_during_experiment_1(tmp_path)
    try:
        assert runner.is_alive(h), "the experiment should still be running"
        app = _start_headless(root, "--max-iterations", "1")
        out = Lines(app)
        out.wait_for("re-attached to experiment #1")
        assert runner.is_alive(h)  # re-attached, not restarted
        gate.open()
        assert app.wait(timeout=120) == 0, app.stderr.read()
    finally:
        gate.open()
    assert gate.arrived() == 1  # experiment #1 ran once
    recs = jsonl_runs(root)
    assert [r["iteration"] for r in recs] == [0, 1, 2]
    assert recs[1]["description"] == "MODE 'ok' -> 'slow'" and recs[1]["metric"] is not None
    assert len(tsv_rows(root)) == 3
    assert runner.marked_processes(h.run_id) == []
    best = [r for r in recs if r["status"] == "keep"][-1]
    assert git(root, "rev-parse", "HEAD").strip() == best["commit"]
    for r in recs:
        assert git(root, "rev-parse", f"refs/autoresearch/t1/{r['iteration']}").strip() == r["commit"]
    assert "[x] MODE=slow" in (root / "autoresearch.md").read_text()


def test_resume_scores_a_run_that_finished_while_the_app_was_dead(tmp_path):
    root, h, gate = _kill_9_during_experiment_1(tmp_path)
    gate.open()  # the run finishes with nobody watching
    wait_until(lambda: not runner.is_alive(h), 60, "the orphaned experiment to finish")
    p = subprocess.run([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "1"], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ended while the app was away" in p.stdout
    recs = jsonl_runs(root)
    assert [r["iteration"] for r in recs] == [0, 1, 2]
    assert recs[1]["status"] in ("keep", "discard") and recs[1]["exit_code"] == 0
    assert recs[1]["metric"] == recs[0]["metric"]  # scored from its log: MODE does not change the toy's value


def test_second_instance_refuses_with_a_clear_message(tmp_path):
    root, gate = _ideas_repo(tmp_path)
    app = _start_headless(root, "--max-iterations", "1")
    try:
        _wait_inflight(root, 1)
        gate.wait_arrived(0)  # the first instance holds the lock, with a run going, until the gate opens
        p = subprocess.run([PY, "-m", "autoresearch_tui", "--headless"], cwd=root, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        assert "another autoresearch-tui" in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        chk = subprocess.run([PY, "-m", "autoresearch_tui", "check"], cwd=root, capture_output=True, text=True, timeout=60)
        assert chk.returncode == 2 and "another autoresearch-tui is running" in chk.stderr
        assert gate.arrived() == 1 and app.poll() is None  # the first instance is still at its run
    finally:
        gate.open()
        out, err = app.communicate(timeout=60)
    assert app.returncode == 0, err
    assert len(tsv_rows(root)) == 2  # the first instance was undisturbed


def test_partial_last_line_dropped_and_row_restored_from_jsonl(repo):
    cfg = load_cfg(repo)
    run_engine(cfg, max_iterations=2)
    tsv = repo / "results.tsv"
    full = tsv.read_text()
    lines = full.splitlines(keepends=True)
    # the app died in the middle of writing the last TSV row
    tsv.write_text("".join(lines[:-1]) + lines[-1][:9])
    with open(repo / ".autoresearch" / "runs.jsonl", "a") as f:
        f.write('{"kind": "run", "iteration": 3, "sta')
    loaded = ResultsStore(repo, "results.tsv", "val_bpb").load()
    assert len(loaded.records) == 3
    assert any("partial last line" in w for w in loaded.warnings)
    assert any("restored 1 row" in w for w in loaded.warnings)
    assert tsv.read_text() == full


def test_keep_override_reapplies_a_discarded_experiment_and_remeasures(repo):
    cfg = load_cfg(repo)
    prop = ScriptedProposer([("worse", [("train.py", "DEPTH = 2", "DEPTH = 1")]), ("more", [("train.py", "WIDTH = 32", "WIDTH = 33")])])

    def on_event(eng, e):
        from autoresearch_tui.engine.events import Decision

        if isinstance(e, Decision) and e.record.iteration == 1:
            assert e.record.status == "discard"
            eng.override(1, "keep")

    run_engine(cfg, proposer=prop, max_iterations=2, on_event=on_event)
    recs = jsonl_runs(repo)
    assert recs[1]["status"] == "discard"  # the jsonl row stays as measured; the override is an event
    rows = tsv_rows(repo)
    assert rows[1]["status"] == "keep"
    assert recs[2]["description"] == "re-measure after the override of #1" and recs[2]["status"] == "keep"
    assert "DEPTH = 1" in (repo / "train.py").read_text()
    assert "keep #1 (user override)" in git(repo, "log", "-3", "--format=%s")
