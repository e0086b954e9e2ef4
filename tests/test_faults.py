"""Fault injection: kill the app anywhere, feed it bad runs, run it long.

Short by default (CI). The long mode: AUTORESEARCH_LONG=1 python -m pytest tests/test_faults.py
(50 kill cycles, 1,000-iteration soak).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import PY, TOY_TRAIN, git, jsonl_runs, load_cfg, make_repo, run_engine, tsv_rows, wait_until
from test_engine_loop import ScriptedProposer

from autoresearch_tui.engine import events as ev
from autoresearch_tui.proposers.base import Edit, Proposal, Proposer

LONG = os.environ.get("AUTORESEARCH_LONG") == "1"


def _leftover_processes(root: Path) -> list:
    left = []
    for p in psutil.process_iter(["cwd", "cmdline", "status"]):
        try:
            if (p.info["cwd"] or "").startswith(str(root)) and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(p.info["cmdline"])
        except psutil.Error:
            pass
    return left


def check_invariants(root: Path) -> None:
    lines = (root / "results.tsv").read_text().split("\n")
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert lines[-1] == ""  # ends with a newline: no partial row
    rows = tsv_rows(root)
    for r in rows:
        assert len(r) == 5 and r["status"] in ("keep", "discard", "crash"), r
    recs = jsonl_runs(root)
    assert len(rows) == len(recs), "results.tsv and runs.jsonl disagree"
    # (several slots record in the order experiments finish)
    assert sorted(r["iteration"] for r in recs) == list(range(len(recs))), "a row was lost or duplicated"
    # the same rows (results.tsv may be rebuilt in iteration order; runs.jsonl is in the order rows came)
    assert sorted((row["commit"], row["status"]) for row in rows) == sorted((r["commit"][:7], r["status"]) for r in recs)
    for r in recs:
        if len(r.get("commit", "")) == 40:
            assert git(root, "rev-parse", f"refs/autoresearch/t1/{r['iteration']}").strip() == r["commit"]
    keeps = [r for r in recs if r["status"] == "keep"]
    assert git(root, "rev-parse", "HEAD").strip() == keeps[-1]["commit"], "the branch head is not the best experiment"
    assert git(root, "status", "--porcelain", "--untracked-files=no").strip() == ""
    assert _leftover_processes(root) == []
    assert not (root / ".autoresearch" / "worktrees").exists(), "a slot's worktree was left behind"
    assert git(root, "worktree", "list", "--porcelain").count("worktree ") == 1


def _last_started(root: Path) -> int:
    """The iteration of the latest run that started (one log file each, confirm and guard logs aside); -1: none."""
    return max((int(p.stem) for p in (root / ".autoresearch" / "logs").glob("[0-9][0-9][0-9][0-9][0-9].log")), default=-1)


def _recorded(root: Path) -> set[int]:
    """Iterations with a complete record in runs.jsonl (a partial last line is skipped)."""
    out = set()
    try:
        text = (root / ".autoresearch" / "runs.jsonl").read_text()
    except FileNotFoundError:
        return out
    for ln in text.splitlines():
        try:
            r = json.loads(ln)
        except ValueError:
            continue
        if r.get("kind", "run") == "run":
            out.add(r["iteration"])
    return out


def _pending(root: Path) -> int | None:
    try:
        pending = json.loads((root / ".autoresearch" / "state.json").read_text()).get("pending_commits") or {}
        return min((int(n) for n in pending), default=None)
    except (OSError, ValueError):
        return None


# Where a cycle kills the app, once the run of a new iteration N has started (files on disk say so):
KILL_POINTS = {
    "during the run": lambda root, n: True,
    "after the row is recorded": lambda root, n: n in _recorded(root),
    # the commit of N+1 exists and its run has not started; the window is short, so the start of
    # the run (a new log) ends the wait too: then the kill lands early in that run
    "after the next commit": lambda root, n: _pending(root) == n + 1 or _last_started(root) > n,
}


@pytest.mark.parametrize("slots", [1, 3])
def test_kill_9_anywhere_loses_nothing(tmp_path, slots):
    cycles = (50 if LONG else 6) if slots == 1 else (15 if LONG else 5)  # 3 slots use up the toy's settings 3x as fast
    # more knobs than the toy's: the mutate proposer must not run out within the long mode's 50 cycles
    train = TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 0.15\nWARMUP = 100\nDECAY = 0.5\nCLIP = 1.0\nHEADS = 8")
    root = make_repo(tmp_path / "r", train=train, research={"kill_grace_s": 0.5})
    if slots > 1:
        with open(root / "autoresearch.toml", "a") as f:
            f.write(f"\n[compute]\nslots = {slots}\n")
        git(root, "commit", "-qam", f"{slots} slots")
    rng = random.Random(1234)
    seen = []
    for i in range(cycles):
        last = _last_started(root)
        point = "during the run" if i == 0 else rng.choice(list(KILL_POINTS)) if slots == 1 else list(KILL_POINTS)[i % len(KILL_POINTS)]
        app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless"], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            # every cycle waits for a new run to start, so the loop advances one iteration per cycle
            # however slow the machine; then the kill lands at the chosen point
            wait_until(lambda: _last_started(root) > last or app.poll() is not None, 120, f"cycle {i}: a new run to start")
            n = _last_started(root)
            wait_until(lambda: KILL_POINTS[point](root, n) or app.poll() is not None, 120, f"cycle {i}: #{n} {point}")
            assert app.poll() is None, f"the app ended by itself ({app.returncode}): {app.stderr.read().decode()}"
        finally:
            if app.poll() is None:
                os.kill(app.pid, signal.SIGKILL)
            app.wait()
        seen.append((n, point))
    # a last, clean, bounded session settles whatever the last kill interrupted
    p = subprocess.run([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "1"], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    check_invariants(root)
    recs = jsonl_runs(root)
    assert len(recs) >= cycles + 1, seen  # one iteration per cycle, all recorded, plus the last session's
    assert {point for _, point in seen} == set(KILL_POINTS), seen  # every kill point was hit


class Endless(Proposer):
    """Proposes a new LR every time (the mutate proposer would run out on a toy)."""

    name = "endless"

    def __init__(self):
        self.n = 0

    async def propose(self, ctx):
        self.n += 1
        cur = next(ln for ln in ctx.files["train.py"].splitlines() if ln.startswith("LR = "))
        return Proposal(f"LR step {self.n}", [Edit("train.py", cur, f"LR = {0.01 + self.n * 1e-7:.7f}")])


def test_soak_resources_stay_flat(tmp_path):
    n = 1000 if LONG else 120
    root = make_repo(tmp_path / "r", research={"command": "echo 'val_bpb: 1.0'"})
    cfg = load_cfg(root)
    me = psutil.Process()
    samples = []

    def on_event(eng, e):
        if isinstance(e, ev.Decision) and e.record.iteration % 20 == 0:
            live = [c for c in me.children() if c.status() != psutil.STATUS_ZOMBIE]
            samples.append((e.record.iteration, me.memory_info().rss, me.num_fds(), len(live)))

    run_engine(cfg, proposer=Endless(), max_iterations=n, on_event=on_event)
    assert len(tsv_rows(root)) == n + 1
    first, last = samples[1], samples[-1]
    assert last[2] <= first[2] + 2, f"file descriptors grew: {samples}"
    assert last[1] - first[1] < 30 * 1024 * 1024, f"RSS grew: {samples}"
    # earlier tests may leave zombies re-parented to this process (a subreaper here): count
    # live children only; none may accumulate
    assert all(s[3] == 0 for s in samples), f"child processes left between runs: {samples}"


BAD_RUNS = [
    # (case, extra code at the end of train.py when MODE == 'bad', expected crash reason words)
    ("exits at once with 0", "    raise SystemExit(0)\n", "never printed"),
    ("metric printed as text", "    print('val_bpb: fast')\n    raise SystemExit(0)\n", "not a number"),
    ("binary garbage on stdout", "    sys.stdout.buffer.write(bytes(range(256)) * 1000)\n    sys.stdout.flush()\n    raise SystemExit(3)\n", "exit code 3"),
    ("killed by a signal", "    import signal\n    os.kill(os.getpid(), signal.SIGKILL)\n", "exit code"),
    ("edits .git HEAD", "    open('.git/HEAD', 'w').write('ref: refs/heads/main\\n')\n", "git state"),
    ("commits on the branch", "    os.system('git -c user.name=x -c user.email=x@x commit -q --allow-empty -m sneaky')\n", "moved the research branch"),
]


def _one_experiment_running(tmp_path, code: str) -> tuple[Path, dict]:
    """A repo whose train.py runs `code` when MODE is not "ok"; one experiment sets MODE."""
    src = TOY_TRAIN.replace('MODE = "ok"\n', 'MODE = "ok"\nimport os, sys\nif MODE != "ok":\n' + code)
    root = make_repo(tmp_path / "r", train=src)
    run_engine(load_cfg(root), proposer=ScriptedProposer([("odd", [("train.py", 'MODE = "ok"', 'MODE = "odd"')])]),
               max_iterations=1)
    return root, jsonl_runs(root)[1]


@pytest.mark.parametrize("case,code,words", BAD_RUNS, ids=[c[0] for c in BAD_RUNS])
def test_bad_runs_are_crashes_with_a_reason(tmp_path, case, code, words):
    root, rec = _one_experiment_running(tmp_path, code)
    assert rec["status"] == "crash" and words in rec["crash_reason"], rec.get("crash_reason")
    check_invariants(root)
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t1"


GOOD_BUT_ODD = [
    ("metric only in a \\r progress line", "    print('step 1\\rval_bpb: 0.5\\rstep 2', end='')\n    raise SystemExit(0)\n", 0.5),
    ("a 50 MB single line before the metric", "    sys.stdout.write('x' * (50 * 1024 * 1024) + '\\n')\n    print('val_bpb: 0.75')\n    raise SystemExit(0)\n", 0.75),
    ("the run deletes run.log", "    os.remove('run.log')\n    print('val_bpb: 0.25')\n    raise SystemExit(0)\n", 0.25),
]


@pytest.mark.parametrize("case,code,value", GOOD_BUT_ODD, ids=[c[0] for c in GOOD_BUT_ODD])
def test_odd_but_valid_runs_are_measured(tmp_path, case, code, value):
    root, rec = _one_experiment_running(tmp_path, code)
    assert rec["status"] == "keep" and rec["metric"] == value, rec
    check_invariants(root)


def test_stale_index_lock_is_cleared_with_a_notice(repo):
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    cfg = load_cfg(repo)
    eng, events = run_engine(cfg, max_iterations=1)
    assert any(isinstance(e, ev.Notice) and "stale" in e.text and "index.lock" in e.text for e in events)
    assert len(tsv_rows(repo)) == 2
    check_invariants(repo)


def test_branch_from_another_session_with_a_different_config_is_resumed_with_a_warning(repo):
    cfg = load_cfg(repo)
    run_engine(cfg, max_iterations=1)
    cfg2 = load_cfg(repo)
    cfg2.research.command = cfg2.research.command + " --other"
    eng, events = run_engine(cfg2, max_iterations=0, proposer=ScriptedProposer([]))
    assert any(isinstance(e, ev.Notice) and "different configuration" in e.text for e in events)


def test_full_disk_for_the_log(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()[:80]})")
    try:
        src = TOY_TRAIN.replace('MODE = "ok"\n', 'MODE = "ok"\nimport os, sys\nif MODE != "ok":\n'
                                "    sys.stdout.write('y' * (4 * 1024 * 1024))\n    sys.stdout.flush()\n")
        root = make_repo(mnt / "r", train=src)
        cfg = load_cfg(root)
        eng, events = run_engine(cfg, proposer=ScriptedProposer([("fill", [("train.py", 'MODE = "ok"', 'MODE = "fill"')])]),
                                 max_iterations=1)
        assert "No space left on device" in eng.end_reason or jsonl_runs(root)[1]["status"] == "crash"
        # free the space (the user deletes the huge log) and start again: nothing was lost
        for log in (root / ".autoresearch" / "logs").glob("*.log"):
            if log.stat().st_size > 1024 * 1024:
                log.write_bytes(b"")
        run_engine(load_cfg(root), proposer=ScriptedProposer([]), max_iterations=1)
        recs = jsonl_runs(root)
        assert [r["iteration"] for r in recs] == [0, 1] and recs[1]["status"] == "crash"
        check_invariants(root)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
