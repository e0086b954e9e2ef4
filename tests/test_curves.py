"""Curves from the log and early stopping against the best run's curve, with real runs that print
curves: a clear loser is stopped, a late bloomer is not, a run with no curve is left alone, and a
re-attached run is still compared."""

from __future__ import annotations

import os
import re
import signal
import subprocess

from conftest import PY, git, jsonl_runs, load_cfg, make_repo, run_engine, wait_until
from test_engine_loop import ScriptedProposer
from test_resume_and_guard import Lines

from autoresearch_tui.engine import curves
from autoresearch_tui.engine import events as ev

CURVY = """\
import time
MODE = "base"
STEP = 0.15
N = 20
for i in range(1, N + 1):
    x = i / N
    base = 3.0 - 1.5 * x
    loss = base * 1.3 if MODE == "bad" else base + 0.6 * (0.6 - x) if MODE == "late" else base
    print(f"step {i:05d} ({x * 100:.1f}%) | loss: {loss:.4f}", flush=True)
    time.sleep(STEP)
print("---")
print(f"val_bpb: {loss:.6f}")
"""


def test_progress_lines_are_read_in_every_supported_shape():
    assert curves.parse_line("step 00123 (45.2%) | loss: 3.214000 | lrm: 1.00") == (0.452, None, 3.214)
    assert curves.parse_line("METRIC loss=2.5 step=10") == (None, None, 2.5)
    assert curves.parse_line("epoch 3 step: 40 train loss = 1.25") == (None, None, 1.25)
    rx = re.compile(r"t=(?P<seconds>[\d.]+)s L=(?P<loss>[\d.]+)")
    assert curves.parse_line("t=30s L=0.75", rx) == (None, 30.0, 0.75)
    assert curves.parse_line("val_bpb: 1.0") is None and curves.parse_line("step 3 loss: nan") is None
    c = curves.Curve(budget_s=60)
    c.feed("step 1 (10.0%) | loss: 3.0\rstep 2 (10.5%) | loss: 2.9\rstep 3 (20.0%) | loss: 2.5\nstep 4 (30", 5)
    assert c.points == [(0.105, 2.9), (0.2, 2.5)]  # one point per 1 % (the latest), the partial line waits
    c.feed(".0%) | loss: 2.0\n", 6)
    assert c.points[-1] == (0.3, 2.0)
    seconds = curves.Curve(budget_s=100, pattern=rx)
    seconds.feed("t=50s L=1.5\n", 999)
    assert seconds.points == [(0.5, 1.5)]
    plain = curves.Curve(budget_s=10)
    plain.feed("step 7 loss 4.0\n", 2.5)  # no percentage: the elapsed share of the budget
    assert plain.points == [(0.25, 4.0)]


def test_verdict_stops_a_clear_loser_and_spares_a_late_bloomer():
    best = [(i / 20, 3.0 - 1.5 * i / 20) for i in range(1, 21)]
    loser = [(x, y * 1.3) for x, y in best[:13]]
    late = [(x, y + 0.6 * (0.6 - x)) for x, y in best[:13]]
    c = curves.SETTINGS["conservative"]
    why = curves.verdict(loser, best, [], c)
    assert why.startswith("stopped early at 65%: loss") and "vs best" in why
    assert curves.verdict(late, best, [], c) == ""
    assert curves.verdict(loser[:9], best, [], c) == ""  # before half the budget: never
    noisy = [[(x, y + d) for x, y in best] for d in (-0.5, 0.0, 0.5)]  # wide spread between repeats
    assert curves.verdict(loser, best, noisy, c) == ""


def _repo(tmp_path, **research):
    return make_repo(tmp_path / "r", train=CURVY, research={"time_budget_s": 3, **research})


def test_a_clear_loser_is_stopped_early_and_recorded_as_discard_a_late_bloomer_is_kept(tmp_path):
    root = _repo(tmp_path)
    prop = ScriptedProposer([("bad", [("train.py", 'MODE = "base"', 'MODE = "bad"')]),
                             ("late", [("train.py", 'MODE = "base"', 'MODE = "late"')])])
    eng, events = run_engine(load_cfg(root), proposer=prop, max_iterations=2)
    base, bad, late = jsonl_runs(root)
    assert base["curve"] == ".autoresearch/curves/00000.json" and len(curves.load(root / base["curve"])) == 20
    assert bad["status"] == "discard" and bad["early_stop"].startswith("stopped early at ")
    assert bad["discard_reason"] == bad["early_stop"] and bad["metric"] is None and not bad.get("crash_reason")
    assert bad["duration_s"] < 0.95 * 20 * 0.15  # the GPU was freed before the end
    assert 0.5 <= curves.load(root / bad["curve"])[-1][0] < 1.0
    assert late["status"] == "keep" and not late.get("early_stop") and late["metric"] < base["metric"]
    live = [e for e in events if isinstance(e, ev.CurveUpdated) and e.iteration == bad["iteration"]]
    assert live and live[-1].best and live[-1].best_iteration == 0 and live[-1].note.startswith("stopped early")
    assert git(root, "rev-parse", "autoresearch/t1").strip() == late["commit"]


def test_off_stops_nothing_and_a_run_without_a_curve_is_left_alone(tmp_path):
    root = _repo(tmp_path, early_stop="off")
    prop = ScriptedProposer([("bad", [("train.py", 'MODE = "base"', 'MODE = "bad"')])])
    run_engine(load_cfg(root), proposer=prop, max_iterations=1)
    assert jsonl_runs(root)[1]["status"] == "discard" and not jsonl_runs(root)[1].get("early_stop")
    quiet = make_repo(tmp_path / "q", train=CURVY.replace('print(f"step', 'print(f"s.t.e.p'), research={"time_budget_s": 3})
    prop = ScriptedProposer([("bad", [("train.py", 'MODE = "base"', 'MODE = "bad"')])])
    _, events = run_engine(load_cfg(quiet), proposer=prop, max_iterations=1)
    assert jsonl_runs(quiet)[1]["metric"] is not None and not jsonl_runs(quiet)[1].get("early_stop")
    notes = [e.note for e in events if isinstance(e, ev.CurveUpdated)]
    assert notes and notes[0].startswith("no curve in the log")


def test_a_run_reattached_after_kill_9_is_still_compared_and_stopped(tmp_path):
    root = make_repo(tmp_path / "r", train=CURVY.replace("STEP = 0.15", "STEP = 0.15 if MODE == 'base' else 0.5"),
                     research={"time_budget_s": 10})
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] MODE=bad\n")
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "2"], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    log = root / ".autoresearch" / "logs" / "00001.log"
    try:
        wait_until(lambda: log.exists() and log.read_text().count("loss:") >= 3, 60, "#1 to print its first points")
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "1"], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    out = Lines(app)
    out.wait_for("re-attached to experiment #1", 60)
    assert app.wait(timeout=120) == 0, app.stderr.read()
    one = next(r for r in jsonl_runs(root) if r["iteration"] == 1)
    assert one["status"] == "discard" and one["early_stop"].startswith("stopped early at "), one


async def test_the_curve_pane_draws_the_live_run_against_the_best_and_v_shows_it_large(tmp_path, monkeypatch):
    from conftest import TEST_PLATFORM, until

    from autoresearch_tui.launch import new_session
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.ui.screens.modals import TextScreen
    from autoresearch_tui.ui.widgets.curve import CurvePane

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    root = make_repo(tmp_path / "r", train=CURVY.replace("STEP = 0.15", "STEP = 0.15 if MODE == 'base' else 0.6"),
                     research={"time_budget_s": 12})
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] MODE=late\n")
    cfg = load_cfg(root)
    eng = new_session(cfg, max_iterations=1, platform=dict(TEST_PLATFORM), poll_s=0.02)
    app = AutoresearchApp(cfg, engine=eng)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.screen.query_one(CurvePane)
        await until(lambda: pane.last is not None and pane.last.iteration == 1 and len(pane.last.points) >= 3, 60, "#1's live curve")
        text = pane.text(60, 9)
        assert "● #1" in text and "· best #0" in text and "○ baseline" in text and text.count("●") >= 4
        await pilot.resize_terminal(80, 24)
        await until(lambda: not pane.display or pane.region.height == 0, 10, "the pane folds away at 80x24")
        await pilot.press("v")
        await until(lambda: isinstance(app.screen, TextScreen), 10, "the full-screen curve")
        await pilot.press("escape")
        eng.stop_now()
        await until(lambda: eng.phase == ev.Phase.STOPPED, 60, "stop")
        app.exit()
