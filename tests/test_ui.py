"""The Textual app driven by Pilot against a real engine on a tiny repo with a fast workload."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import TEST_PLATFORM, TOY_TRAIN, git, jsonl_runs, load_cfg, make_repo

from autoresearch_tui.engine import events as ev
from autoresearch_tui.launch import new_session
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.ui.screens.main import MainScreen
from autoresearch_tui.ui.screens.modals import QuitScreen, TextScreen
from autoresearch_tui.ui.widgets.results import ResultsTable

# every run takes ~0.4 s so that keys land while something runs
SLOW_TOY = TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 0.4")


@pytest.fixture(autouse=True)
def _user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _app(root, max_iterations=0, train=None):
    cfg = load_cfg(root)
    eng = new_session(cfg, max_iterations=max_iterations, platform=dict(TEST_PLATFORM), poll_s=0.02)
    events: list = []
    eng.subscribe(events.append)
    return AutoresearchApp(cfg, engine=eng), eng, events


async def wait_for(pilot, cond, timeout=30.0, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or cond}")


def decisions(events):
    return [e.record for e in events if isinstance(e, ev.Decision)]


async def quit_app(pilot, app, eng):
    eng.stop_now()
    await wait_for(pilot, lambda: eng.phase == ev.Phase.STOPPED, 30, "engine stop")
    app.exit()


async def test_pause_stops_new_runs_and_resume_continues(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(decisions(events)) >= 1, what="baseline")
        await pilot.press("p")
        assert eng.paused
        screen = app.screen
        assert isinstance(screen, MainScreen)
        # the footer now offers resume, not pause
        assert screen.check_action("resume", ()) is True and screen.check_action("pause", ()) is False
        await wait_for(pilot, lambda: eng.current_run is None and eng.phase == ev.Phase.PAUSED, what="paused")
        starts = len([e for e in events if isinstance(e, ev.RunStarted)])
        await pilot.pause(1.5)
        assert len([e for e in events if isinstance(e, ev.RunStarted)]) == starts  # a paused loop starts no run
        await pilot.press("p")
        assert not eng.paused
        await wait_for(pilot, lambda: len([e for e in events if isinstance(e, ev.RunStarted)]) > starts, what="resume")
        await quit_app(pilot, app, eng)


async def test_keep_key_on_a_discarded_row_reapplies_it(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: any(r.status == "discard" for r in decisions(events)), 60, "a discard")
        await pilot.press("p")
        target = next(r for r in decisions(events) if r.status == "discard")
        table = app.screen.query_one(ResultsTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(str(target.iteration)))
        await pilot.pause(0.1)
        assert app.screen.check_action("keep", ()) is True
        assert app.screen.check_action("discard", ()) is None  # greyed out: it is not kept
        await pilot.press("k")
        await wait_for(pilot, lambda: any(isinstance(e, ev.OverrideApplied) for e in events), 30, "override")
        assert f"keep #{target.iteration} (user override)" in git(root, "log", "-1", "--format=%s")
        # the event reaches the screen as a message: wait for the cell, updated in place
        await wait_for(pilot, lambda: "keep (you)" in str(table.get_row(str(target.iteration))[5]), 10, "the cell")
        await quit_app(pilot, app, eng)


async def test_typed_idea_is_queued_then_tagged_on_its_row(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(decisions(events)) >= 1, what="baseline")
        await pilot.press("i")
        for ch in "DEPTH=7":
            await pilot.press(ch)
        assert not eng.paused  # 'p' never fired while typing (there is none, but letters reach the input)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "[ ] DEPTH=7" in (root / "autoresearch.md").read_text() or
                       "DEPTH=7" in (root / "autoresearch.md").read_text(), 10, "idea saved")
        backlog_text = str(app.screen.query_one("#backlog-list").render())
        assert "DEPTH=7" in backlog_text
        await wait_for(pilot, lambda: any(r.idea == "DEPTH=7" for r in decisions(events)), 60, "idea run")
        rec = next(r for r in decisions(events) if r.idea == "DEPTH=7")
        assert rec.description == "DEPTH 2 -> 7"
        table = app.screen.query_one(ResultsTable)
        await wait_for(pilot, lambda: str(rec.iteration) in table.records, 10, "the row")
        assert str(table.get_row(str(rec.iteration))[7]) == "DEPTH=7"
        assert "[x] DEPTH=7" in (root / "autoresearch.md").read_text()
        await quit_app(pilot, app, eng)


async def test_printable_keys_go_to_the_idea_input(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("i")
        for ch in "pqsxkd":
            await pilot.press(ch)
        assert app.screen.query_one("#idea-input").value == "pqsxkd"
        assert not eng.paused and not eng.stopping
        assert isinstance(app.screen, MainScreen)
        await pilot.press("escape")
        await quit_app(pilot, app, eng)


async def test_kill_key_asks_then_records_crash(tmp_path):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 30.0"))
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: eng.current_run is not None, what="a run")
        await pilot.press("x")
        await pilot.pause(0.1)
        assert app.screen.__class__.__name__ == "ConfirmScreen"
        await pilot.press("y")
        await wait_for(pilot, lambda: len(decisions(events)) >= 1, 30, "crash row")
        rec = decisions(events)[0]
        assert rec.status == "crash" and rec.crash_reason == "killed by the user"
        await quit_app(pilot, app, eng)


async def test_enter_shows_the_diff_and_stop_ends_the_session(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(decisions(events)) >= 2, 60, "an experiment")
        await pilot.press("s")
        assert eng.stopping
        table = app.screen.query_one(ResultsTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TextScreen)
        await wait_for(pilot, lambda: "diff --git" in str(app.screen.query_one("#text-body").render()), 10, "diff")
        await pilot.press("escape")
        await wait_for(pilot, lambda: eng.phase == ev.Phase.STOPPED, 30, "stop")
        assert eng.end_reason == "stopped by the user"
        app.exit()


async def test_quit_while_running_asks_and_kill_leaves_no_process(tmp_path):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 30.0"))
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: eng.current_run is not None, what="a run")
        pid = eng.current_run.pid
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, QuitScreen)
        await pilot.click("#kill")
        await wait_for(pilot, lambda: eng.phase == ev.Phase.STOPPED, 30, "stopped")
    from conftest import pids_alive

    assert pids_alive([pid]) == []
    assert jsonl_runs(root)[0]["crash_reason"] == "killed: the session was stopped by the user"


async def test_help_and_theme_keys(tmp_path):
    root = make_repo(tmp_path / "r", train=SLOW_TOY)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert isinstance(app.screen, TextScreen)
        assert "Kill run" in str(app.screen.query_one("#text-body").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(decisions(events)) >= 1, what="baseline")
        await pilot.press("g")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TextScreen)
        assert "running best" in str(app.screen.query_one("#text-body").render())
        await pilot.press("escape")
        await pilot.press("t")
        await pilot.pause(0.3)
        assert "CommandPalette" in app.screen.__class__.__name__
        await pilot.press("escape")
        app.theme = "autoresearch-paper"
        await pilot.pause(0.1)
        from autoresearch_tui.ui.settings import load_settings

        assert load_settings()["theme"] == "autoresearch-paper"  # the choice persists
        await quit_app(pilot, app, eng)


async def test_wizard_writes_a_valid_config_and_starts(tmp_path):
    root = make_repo(tmp_path / "myproject", write_config=False)
    path = root / "autoresearch.toml"
    app = AutoresearchApp(None, config_path=path, max_iterations=1,
                          wizard_options={"env": {}, "probe_local": False, "platform": dict(TEST_PLATFORM), "tag": "wiz"})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        wiz = app.screen
        assert wiz.query_one("#f-files_in_scope").value == "train.py"
        assert wiz.query_one("#f-read_only").value == "prepare.py"
        assert wiz.query_one("#f-metric").value == "val_bpb"  # guessed from the training script
        assert "time_budget_s is not set" in str(wiz.query_one("#wizard-error").render())
        wiz.query_one("#f-time_budget_s").value = "-3"
        await pilot.pause(0.1)
        assert "must be a positive number" in str(wiz.query_one("#wizard-error").render())
        wiz.query_one("#f-time_budget_s").value = "5"
        wiz.query_one("#f-command").value = f"{__import__('sys').executable} train.py"
        await pilot.pause(0.1)
        assert str(wiz.query_one("#wizard-error").render()).strip() == ""
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert wiz.query_one("#confirm-table").row_count >= 10
        assert app.focused is wiz.query_one("#start")
        await pilot.press("enter")
        await wait_for(pilot, lambda: path.exists(), 10, "config written")
        await wait_for(pilot, lambda: app.engine is not None and app.engine.phase == ev.Phase.STOPPED, 60, "session")
    from autoresearch_tui.config import load

    cfg = load(path)
    assert cfg.research.time_budget_s == 5 and cfg.research.branch_tag == "wiz" and cfg.metric.name == "val_bpb"
    assert len(jsonl_runs(root)) == 2


async def test_a_flood_of_output_does_not_freeze_keys(tmp_path):
    flood = TOY_TRAIN.replace("time.sleep(SLEEP)", "t0 = time.time()\nwhile time.time() - t0 < 4:\n    sys.stdout.write('x' * 60 + '\\n' * 1)\n")
    root = make_repo(tmp_path / "r", train=flood)
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: eng.current_run is not None, what="a run")
        await pilot.pause(1.0)
        lat = []
        for _ in range(5):
            t0 = time.monotonic()
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, TextScreen), 5, "help")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), 5, "back")
            lat.append(time.monotonic() - t0)
        assert max(lat) < 2.0, lat  # responsive (measured precisely in bench/)
        log = app.screen.query_one("#log")
        assert log.line_count <= 5000 + 10  # bounded memory
        await quit_app(pilot, app, eng)
