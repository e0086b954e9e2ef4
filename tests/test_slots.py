"""Several experiments at once: a git worktree per slot, GPUs never shared, the moving-best rule,
recovery of N runs after kill -9 — on real worktrees and real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import PY, TOY_TRAIN, Gate, cli, git, jsonl_runs, load_cfg, make_repo, pids_alive, tsv_rows, until, wait_until
from test_engine_loop import ScriptedProposer

from autoresearch_tui.config import Config, ConfigError, from_dict
from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine import runner
from autoresearch_tui.engine.gpus import SlotPlanError, plan_slots


def _spy(train: str, where: Path) -> str:
    """`train` that first writes what it sees (cwd, GPUs, slot, iteration, a data file) to `where`."""
    return (
        "import json as _j, os as _o\n"
        f"_d = {str(where)!r}\n"
        "_o.makedirs(_d, exist_ok=True)\n"
        "_data = open('data/input.txt').read().strip() if _o.path.exists('data/input.txt') else None\n"
        "with open(_o.path.join(_d, f\"{_o.environ['AUTORESEARCH_ITERATION']}.json\"), 'w') as _f:\n"
        "    _j.dump({'cwd': _o.getcwd(), 'gpus': _o.environ.get('CUDA_VISIBLE_DEVICES'), 'slot': _o.environ['AUTORESEARCH_SLOT'],"
        " 'pid': _o.getpid(), 'data': _data, 'src': open('train.py').read()}, _f)\n"
        + train
    )


def _compute(root: Path, text: str, commit: bool = True) -> None:
    """Append a [compute] table to the repository's configuration (committed, as a user would)."""
    with open(root / "autoresearch.toml", "a") as f:
        f.write(text)
    if commit:
        git(root, "commit", "-qam", "compute")


def _seen(where: Path) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_text()) for p in where.glob("*.json")}


def _worktrees(root: Path) -> list[str]:
    return [ln.split(" ", 1)[1] for ln in git(root, "worktree", "list", "--porcelain").splitlines() if ln.startswith("worktree ")]


# ------------------------------------------------------------------- config
def test_slot_plan_from_config_and_visible_gpus():
    def plan(compute, visible):
        return plan_slots(from_dict({"compute": compute}, Path("autoresearch.toml")), visible=visible).gpus

    assert plan({"slots": "auto"}, ["0", "1", "2", "3"]) == [["0"], ["1"], ["2"], ["3"]]
    assert plan({"slots": "auto", "gpus_per_run": 2}, ["0", "1", "2", "3", "4"]) == [["0", "1"], ["2", "3"]]
    assert plan({"slots": "auto"}, []) == [[]]  # no GPU: one slot
    assert plan({"slots": 3}, []) == [[], [], []]  # CPU-only machines may run several
    assert plan({"slots": 2, "gpus": [5, 7]}, ["0"]) == [["5"], ["7"]]  # the explicit list wins
    assert plan({"slots": 1}, ["0", "1"]) == [[]]  # one slot as before: the run sees every GPU
    try:
        plan({"slots": 3}, ["0", "1"])
    except SlotPlanError as e:
        assert str(e).startswith("autoresearch.toml: [compute] slots = 3") and "2 are visible" in str(e)
    else:
        raise AssertionError("3 slots on 2 GPUs must be refused")


def test_compute_config_errors_are_one_line(tmp_path):
    for compute, words in [({"slots": "many"}, 'whole number or "auto"'), ({"slots": 0}, "between 1 and 64"),
                           ({"gpus": [0, 0]}, "twice"), ({"slots": 3, "gpus": [0, 1]}, "needs 3 GPUs"),
                           ({"slot": 2}, "did you mean 'slots'")]:
        try:
            from_dict({"compute": compute}, Path("autoresearch.toml"))
        except ConfigError as e:
            assert str(e).startswith("autoresearch.toml: ") and words in str(e) and "\n" not in str(e), str(e)
        else:
            raise AssertionError(compute)
    root = make_repo(tmp_path / "r")
    _compute(root, "\n[compute]\nslots = 4\ngpus = [0, 1]\n")
    p = cli(root, "check")
    assert p.returncode == 2 and "[compute] slots = 4" in p.stderr and "Traceback" not in p.stderr
    assert Config().compute.slots == 1


# ---------------------------------------------------------------- isolation
def test_three_slots_run_at_once_each_in_its_own_worktree_on_its_own_gpu(tmp_path):
    gate, spy = Gate(tmp_path / "gate"), tmp_path / "seen"
    train = _spy(gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), spy)
    root = make_repo(tmp_path / "r", train=train, research={"time_budget_s": 60})
    _compute(root, '\n[compute]\nslots = 3\ngpus = ["a", "b", "c"]\n')
    (root / "data").mkdir()
    (root / "data" / "input.txt").write_text("untracked dataset\n")  # not in git: linked into each worktree
    prop = ScriptedProposer([
        ("LR up", [("train.py", "LR = 0.01", "LR = 0.02")]),
        ("width up", [("train.py", "WIDTH = 32", "WIDTH = 48")]),
        ("depth up", [("train.py", "DEPTH = 2", "DEPTH = 3")]),
    ])

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 3, 120, "three experiments held at the gate at once")
        # (a run can reach the gate before the engine has announced it: wait for the slots' lines)
        await until(lambda: sum(s.state == ev.Phase.RUNNING for s in eng.slots) == 3, 60, lambda: f"three running slots: {eng.slots}")
        assert len({s.iteration for s in eng.slots}) == 3
        gate.open()

    from conftest import drive_engine

    eng, events, _ = drive_engine(load_cfg(root), driver, proposer=prop, max_iterations=3)
    recs = jsonl_runs(root)
    assert sorted(r["iteration"] for r in recs if r.get("reapply_of") is None) == [0, 1, 2, 3]
    assert len(tsv_rows(root)) == len(recs) == len({r["iteration"] for r in recs})
    seen = _seen(spy)
    exp = {n: seen[n] for n in (1, 2, 3)}
    cwds = {s["cwd"] for s in exp.values()}
    assert len(cwds) == 3 and all("/.autoresearch/worktrees/slot-" in c for c in cwds)  # never the user's tree
    assert sorted(s["gpus"] for s in exp.values()) == ["a", "b", "c"]  # one GPU each, none shared
    assert {s["slot"] for s in exp.values()} == {"0", "1", "2"}
    assert all(s["data"] == "untracked dataset" for s in seen.values())  # the untracked data was found
    # each ran its own experiment's code: its commit's LR/WIDTH/DEPTH
    by_desc = {r["description"]: r for r in recs}
    for desc in ("LR up", "width up", "depth up"):
        n, commit = by_desc[desc]["iteration"], by_desc[desc]["commit"]
        assert git(root, "rev-parse", f"refs/autoresearch/t1/{n}").strip() == commit
        assert seen[n]["src"] == git(root, "show", f"{commit}:train.py")
    # the end: worktrees gone and pruned, the branch on the best, the user's tree clean
    assert _worktrees(root) == [str(root)]
    assert not (root / ".autoresearch" / "worktrees").exists()
    best = eng.history.best()
    assert git(root, "rev-parse", "autoresearch/t1").strip() == best.commit
    assert git(root, "status", "--porcelain", "--untracked-files=no").strip() == ""
    assert (root / "data" / "input.txt").read_text() == "untracked dataset\n"  # the user's data untouched
    assert pids_alive([s["pid"] for s in seen.values()]) == []
    slot_events = [e for e in events if isinstance(e, ev.RunStarted)]
    assert {e.slot for e in slot_events} == {0, 1, 2}


# --------------------------------------------------------------- moving best
def _two_slot_repo(tmp_path) -> tuple[Path, Gate, Gate]:
    """Two slots; a run with LR changed waits at gate A, one with WIDTH changed at gate B."""
    ga, gb = Gate(tmp_path / "gate-a"), Gate(tmp_path / "gate-b")
    train = gb.script(ga.script(when="LR != 0.01"), when="WIDTH != 32")
    root = make_repo(tmp_path / "r", train=train, research={"time_budget_s": 60})
    _compute(root, "\n[compute]\nslots = 2\n")
    return root, ga, gb


def _a_first(ga: Gate, gb: Gate, a_desc: str):
    """Both experiments start from the baseline; A ends and is decided first, then B."""

    async def driver(eng, events):
        await until(lambda: ga.arrived() == 1 and gb.arrived() == 1, 120, "A and B running at once")
        ga.open()
        await until(lambda: any(isinstance(e, ev.Decision) and e.record.description == a_desc for e in events), 60, "A decided")
        gb.open()

    return driver


def test_a_win_on_an_old_best_is_reapplied_onto_the_new_best_and_remeasured(tmp_path):
    # A (LR) is kept first; B (WIDTH) also beat the baseline it started from, but the best moved:
    # B is re-applied onto A and re-measured as a new experiment, which is kept
    root, ga, gb = _two_slot_repo(tmp_path)
    prop = ScriptedProposer([
        ("A: LR up", [("train.py", "LR = 0.01", "LR = 0.04")]),
        ("B: width up", [("train.py", "WIDTH = 32", "WIDTH = 64")]),
    ])
    from conftest import drive_engine

    drive_engine(load_cfg(root), _a_first(ga, gb, "A: LR up"), proposer=prop, max_iterations=2)
    recs = {r["description"]: r for r in jsonl_runs(root)}
    a, b = recs["A: LR up"], recs["B: width up"]
    assert a["status"] == "keep" and a["parent"] == b["parent"]  # both started from the baseline
    assert b["status"] == "discard" and "re-applied onto it and re-measured" in b["discard_reason"]
    c = next(r for r in jsonl_runs(root) if r.get("reapply_of") == b["iteration"])
    assert c["description"] == f"B: width up (re-applied onto #{a['iteration']})"
    assert c["iteration"] > max(a["iteration"], b["iteration"]) and c["parent"] == a["commit"]
    assert c["status"] == "keep" and c["metric"] < a["metric"]  # both changes together beat A alone
    head = git(root, "rev-parse", "autoresearch/t1").strip()
    assert head == c["commit"] and git(root, "rev-parse", f"{head}^").strip() == a["commit"]
    src = git(root, "show", f"{head}:train.py")
    assert "LR = 0.04" in src and "WIDTH = 64" in src
    assert len(tsv_rows(root)) == 4  # baseline, A, B, B re-applied: one row each


def test_a_win_that_no_longer_applies_onto_the_new_best_is_discarded_with_the_reason(tmp_path):
    root, ga, gb = _two_slot_repo(tmp_path)
    prop = ScriptedProposer([
        ("A: LR up", [("train.py", "LR = 0.01", "LR = 0.04")]),
        # B changes the same line (and WIDTH, to wait at gate B): it cannot be re-applied onto A
        ("B: LR and width", [("train.py", "LR = 0.01\nWIDTH = 32", "LR = 0.03\nWIDTH = 64")]),
    ])
    from conftest import drive_engine

    drive_engine(load_cfg(root), _a_first(ga, gb, "A: LR up"), proposer=prop, max_iterations=2)
    recs = {r["description"]: r for r in jsonl_runs(root)}
    assert recs["A: LR up"]["status"] == "keep"
    b = recs["B: LR and width"]
    assert b["metric"] < jsonl_runs(root)[0]["metric"]  # it did beat the baseline it started from
    assert b["status"] == "discard" and "no longer applies onto the new best" in b["discard_reason"]
    assert not [r for r in jsonl_runs(root) if r.get("reapply_of") is not None]
    assert git(root, "rev-parse", "autoresearch/t1").strip() == recs["A: LR up"]["commit"]


# ------------------------------------------------------------------ commands
def test_kill_one_slot_leaves_the_others_running_and_stop_now_kills_all(tmp_path):
    gate = Gate(tmp_path / "gate")
    root = make_repo(tmp_path / "r", train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), research={"time_budget_s": 60})
    _compute(root, "\n[compute]\nslots = 3\n")

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 3, 120, "three experiments running")
        await until(lambda: all(s.handle is not None for s in eng.ctx.slots), 60, "the engine holding all three runs")
        pids = [gate.pid(t) for t in range(3)]
        victim = eng.ctx.slots[1]
        n = victim.iteration
        assert eng.kill_run(slot=1)
        await until(lambda: any(isinstance(e, ev.Decision) and e.record.iteration == n for e in events), 60, "the killed run recorded")
        assert len(pids_alive(pids)) == 2  # the other two still run
        eng.stop_now()
        return pids, n

    from conftest import drive_engine

    eng, events, (pids, n) = drive_engine(load_cfg(root), driver, max_iterations=0)
    recs = jsonl_runs(root)
    killed = next(r for r in recs if r["iteration"] == n)
    assert killed["status"] == "crash" and "killed by the user" in killed["crash_reason"]
    assert pids_alive(pids) == []
    assert len({r["iteration"] for r in recs}) == len(recs)
    assert _worktrees(root) == [str(root)]


# ------------------------------------------------------------------ recovery
def test_kill_9_with_three_runs_in_flight_loses_nothing_and_leaves_no_orphan(tmp_path):
    gate = Gate(tmp_path / "gate")
    root = make_repo(tmp_path / "r", train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), research={"time_budget_s": 120})
    _compute(root, "\n[compute]\nslots = 3\n")
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "5"], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for t in range(3):
            gate.wait_arrived(t)
        state = json.loads((root / ".autoresearch" / "state.json").read_text())
        wait_until(lambda: len(json.loads((root / ".autoresearch" / "state.json").read_text()).get("inflight_runs") or {}) == 3,
                   30, "three runs saved as in flight")
        state = json.loads((root / ".autoresearch" / "state.json").read_text())
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    saved = state["inflight_runs"]
    handles = {int(n): runner.RunHandle.from_state(v) for n, v in saved.items()}
    assert all(runner.is_alive(h) for h in handles.values())
    gate.release(0)  # one finishes while the app is dead; the other two are re-attached
    wait_until(lambda: sum(not runner.is_alive(h) for h in handles.values()) == 1, 60, "one run to end with nobody watching")
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "2"], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: sum(1 for h in handles.values() if runner.is_alive(h)) == 2, 5, "the other two still alive")
        wait_until(lambda: (root / ".autoresearch" / "runs.jsonl").read_text().count('"iteration"') >= 2, 60, "the dead run scored")
        gate.open()
        out, err = app.communicate(timeout=180)
    finally:
        gate.open()
    assert app.returncode == 0, err
    assert "ended while the app was away" in out and out.count("re-attached to experiment") == 2
    recs = jsonl_runs(root)
    its = [r["iteration"] for r in recs]
    assert len(its) == len(set(its))  # no row duplicated, no number reused
    assert set(handles) <= set(its)  # every run in flight was recorded
    assert len(tsv_rows(root)) == len(recs)
    assert sum(1 for r in recs if r["iteration"] > max(handles)) >= 2  # then this session's two experiments
    for h in handles.values():
        assert runner.marked_processes(h.run_id) == []
    best = max((r for r in recs if r["status"] == "keep"), key=lambda r: its.index(r["iteration"]))
    assert git(root, "rev-parse", "autoresearch/t1").strip() == best["commit"]
    assert _worktrees(root) == [str(root)]
    assert "inflight_runs" not in (root / ".autoresearch" / "state.json").read_text()


def test_one_slot_still_runs_in_the_repository_itself(tmp_path):
    spy = tmp_path / "seen"
    root = make_repo(tmp_path / "r", train=_spy(TOY_TRAIN, spy))
    from conftest import run_engine

    run_engine(load_cfg(root), max_iterations=1)
    seen = _seen(spy)
    assert {s["cwd"] for s in seen.values()} == {str(root)} and all(s["gpus"] is None for s in seen.values())
    assert not (root / ".autoresearch" / "worktrees").exists()
    _ = asyncio  # (imported for the drivers above)


# ----------------------------------------------------------------------- TUI
async def test_slots_pane_shows_each_run_and_the_log_and_x_follow_the_selected_slot(tmp_path, monkeypatch):
    from conftest import TEST_PLATFORM

    from autoresearch_tui.launch import new_session
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.ui.screens.modals import ConfirmScreen
    from autoresearch_tui.ui.widgets.logview import LogPane
    from autoresearch_tui.ui.widgets.slots import SlotsPane
    from autoresearch_tui.ui.widgets.status import StatusBar

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    gate = Gate(tmp_path / "gate")
    root = make_repo(tmp_path / "r", train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), research={"time_budget_s": 300})
    _compute(root, '\n[compute]\nslots = 3\ngpus = [0, 1, 2]\n')
    cfg = load_cfg(root)
    eng = new_session(cfg, max_iterations=0, platform=dict(TEST_PLATFORM), poll_s=0.02)
    app = AutoresearchApp(cfg, engine=eng)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            async def wait(cond, what, timeout=60.0):
                await until(lambda: cond(), timeout, what)

            await wait(lambda: gate.arrived() == 3, "three runs held")
            pane = app.screen.query_one(SlotsPane)
            await wait(lambda: pane.display and pane.running() == 3, "the pane shows three running slots")
            await wait(lambda: all(pane.values.get(i, "").startswith("loss") for i in range(3)), "each slot's last loss read from its log")
            text = pane.render().plain.splitlines()
            assert len(text) == 3 and [ln[1] for ln in text] == ["0", "1", "2"]
            assert "GPU 0" in text[0] and "GPU 2" in text[2] and all("running" in ln for ln in text)
            assert "3 of 3 slots running" in app.screen.query_one(StatusBar).detail
            assert pane.region.height == 3 and pane.region.y + pane.region.height <= 24  # visible at 80x24
            # pick slot 2: the log pane follows its run, and x kills only that one
            await pilot.press("2")
            await wait(lambda: pane.selected == 2, "slot 2 selected")
            target = next(s for s in eng.slots if s.index == 2)
            await wait(lambda: str(app.screen.query_one(LogPane).tailer.path) == target.log_path, "the log follows slot 2")
            await pilot.press("x")
            await wait(lambda: isinstance(app.screen, ConfirmScreen), "the kill dialog")
            assert f"#{target.iteration}" in app.screen.question
            await pilot.press("y")
            await wait(lambda: [r for r in eng.history if r.iteration == target.iteration], "the killed run recorded")
            assert eng.history.get(target.iteration).status == "crash"
            assert sum(1 for s in eng.ctx.slots if s.handle is not None) >= 2  # the others run on
            await pilot.press("tab")
            await wait(lambda: pane.selected == 0, "tab wraps to slot 0")
            eng.stop_now()
            await wait(lambda: eng.phase == ev.Phase.STOPPED, "engine stop")
            app.exit()
    finally:
        gate.open()


# -------------------------------------------------------------------- sweeps
def test_a_sweep_runs_one_experiment_per_value_at_once_and_keeps_only_the_best(tmp_path):
    gate = Gate(tmp_path / "gate")
    root = make_repo(tmp_path / "r", train=gate.script(when="LR != 0.01"), research={"time_budget_s": 60})
    _compute(root, "\n[compute]\nslots = 3\n")
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] sweep LR 0.02 0.04 0.08\n- [ ] sweep NOPE 1 2\n")

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 3, 120, "the three values of the sweep running at once")
        problem = await asyncio.to_thread(eng.idea_problem, "sweep NOPE 1 2")
        assert problem == "this sweep cannot run: no module-level constant NOPE in train.py"
        assert await asyncio.to_thread(eng.idea_problem, "sweep LR 0.5 0.6") is None
        gate.open()

    from conftest import drive_engine

    drive_engine(load_cfg(root), driver, proposer=ScriptedProposer([]), max_iterations=3)
    recs = [r for r in jsonl_runs(root) if "(sweep)" in r["description"]]
    assert sorted(r["description"] for r in recs) == ["LR 0.01 -> 0.02 (sweep)", "LR 0.01 -> 0.04 (sweep)", "LR 0.01 -> 0.08 (sweep)"]
    assert len({r["parent"] for r in recs}) == 1  # all three started from the same best
    win = next(r for r in recs if "0.04" in r["description"])
    assert win["status"] == "keep"
    for r in recs:
        if r is not win:
            assert r["status"] == "discard" and r["discard_reason"] == f"sweep: #{win['iteration']} (LR 0.01 -> 0.04 (sweep)) measured better"
    assert git(root, "rev-parse", "autoresearch/t1").strip() == win["commit"]
    notes = (root / "autoresearch.md").read_text()
    assert "[x] sweep LR 0.02 0.04 0.08" in notes
    assert "sweep NOPE 1 2" in notes and "cannot sweep: no module-level constant NOPE" in notes


def test_an_uncommitted_edit_of_the_tracked_configuration_survives_the_loops_resets(tmp_path):
    # the configuration is tracked (committed with the code); the user adds [compute] and starts:
    # the resets that discard experiments must not undo that edit (the next start needs it)
    root = make_repo(tmp_path / "r")
    _compute(root, "\n[compute]\nslots = 2\n", commit=False)
    edited = (root / "autoresearch.toml").read_text()
    from conftest import run_engine

    run_engine(load_cfg(root), max_iterations=3)
    assert any(r["status"] == "discard" for r in jsonl_runs(root))  # a reset happened
    assert (root / "autoresearch.toml").read_text() == edited
