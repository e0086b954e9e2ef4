"""The main screen's states and notices (issue 17): a quiet run, an ended session and its restart,
toasts, the kill dialog's text, the results' status symbols, the diff view of a crash, copying.

Real engine, real runs (held at a Gate where "while it runs" matters), Pilot keys; see test_ui.py
for why every effect is waited for.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import TEST_PLATFORM, load_cfg, make_repo, tsv_rows
from test_ui import HELD, SLOW_TOY, decisions, of, quit_app, wait_for
from textual.geometry import Region
from textual.widgets import Log, ProgressBar
from textual.widgets._toast import Toast

from autoresearch_tui.engine import events as ev
from autoresearch_tui.launch import new_session
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.ui.screens.main import MainScreen
from autoresearch_tui.ui.screens.modals import ConfirmScreen, TextScreen
from autoresearch_tui.ui.widgets.keybar import KeyBar
from autoresearch_tui.ui.widgets.results import ResultsTable
from autoresearch_tui.ui.widgets.status import StatusText


def _app(root, iterations=0, **kw):
    """A real session on `root` (bounded to `iterations`, 0: unbounded) in the app (kw: the app's)."""
    cfg = load_cfg(root)
    eng = new_session(cfg, max_iterations=iterations, platform=dict(TEST_PLATFORM), poll_s=0.02)
    events: list = []
    eng.subscribe(events.append)
    return AutoresearchApp(cfg, engine=eng, **kw), eng, events


def run_line(app) -> str:
    return app.screen.query_one(StatusText).text.plain.split("\n")[1]


def toasts(app) -> list[str]:
    return [str(t.render()) for t in app.screen.query(Toast)]


async def test_a_quiet_run_says_how_long_it_has_been_silent_and_past_the_budget_when_it_is_killed(tmp_path, gate):
    # budget 300 s, so the kill comes at 600 s (2 x budget); the app's clock is moved forward
    # instead of waiting (the engine and its run keep real time)
    root = make_repo(tmp_path / "r", train=gate.script(), research=HELD)
    shift = [0.0]
    app, eng, events = _app(root, clock=lambda: time.time() + shift[0])
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.screen.query_one(Log)
        await wait_for(pilot, lambda: app.screen.running and any("waits" in ln for ln in log.lines), 60, "the run's last words")
        bar = app.screen.query_one("#run-progress", ProgressBar)
        assert "no output" not in run_line(app) and "run 0:00:0" in run_line(app)
        shift[0] = 45  # silent for 45 s
        await wait_for(pilot, lambda: re.search(r"no output for 4\d s", run_line(app)), 5, lambda: run_line(app))
        assert "over budget" not in run_line(app) and bar.display
        shift[0] = 320  # past the budget, before the kill
        await wait_for(pilot, lambda: "over budget" in run_line(app), 5, lambda: run_line(app))
        line = run_line(app)
        assert "over budget — killed at 0:10:00 if still running" in line and re.search(r"no output for 0:05:[23]\d", line), line
        assert not bar.display  # no full progress bar past the budget
        shown = app.screen.query_one(StatusText).render().plain.split("\n")[1]  # cut to 80 columns
        assert "no output for" in shown and "killed at 0:10:00" in shown, shown
        eng.stop_after_run()  # no next run: its elapsed time would be read on the moved clock too
        gate.release(0)
        await wait_for(pilot, lambda: decisions(events) and not app.screen.running, 60, "the run to be recorded")
        await wait_for(pilot, lambda: "over budget" not in run_line(app) and bar.display, 5, lambda: run_line(app))
        await quit_app(pilot, app, eng)


async def test_an_ended_session_offers_restart_not_pause_and_r_starts_a_new_one(tmp_path):
    root = make_repo(tmp_path / "r")
    # the app's own bound (what `--max-iterations 1` gives it) is the restarted session's too
    app, eng, events = _app(root, 1, max_iterations=1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, MainScreen)
        table = screen.query_one(ResultsTable)
        await wait_for(pilot, lambda: screen.ended and len(table.records) == 2, 60, "the session to end")
        bar = screen.query_one(KeyBar)
        await wait_for(pilot, lambda: "r Restart" in bar.render().plain, 5, lambda: bar.render().plain)
        assert "Pause" not in bar.render().plain and "Resume" not in bar.render().plain and "Stop" not in bar.render().plain
        assert str(table.get_row("0")[5]).startswith("✓ keep")  # a symbol beside the word
        await pilot.press("p")  # not offered: does nothing
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen), 10, "help")
        rows = {ln.split()[0]: ln for ln in str(app.screen.query_one("#text-body").render()).splitlines() if ln.startswith("  ")}
        assert "p" not in rows and "x" not in rows and "new one" in rows["r"]
        assert not screen.paused and screen.query_one(StatusText).text.plain.startswith(" STOPPED ")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, 10, "back")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.engine is not eng, 10, "a new session")
        await wait_for(pilot, lambda: screen.ended and len(table.records) == 3, 60, "the new session to run one experiment and end")
    rows = tsv_rows(root)
    assert len(rows) == 3 and [r["description"] for r in rows].count("baseline") == 1  # resumed: no second baseline


async def test_toasts_drop_repeats_keep_the_newest_two_and_skip_what_the_status_bar_says(tmp_path, gate):
    root = make_repo(tmp_path / "r", train=gate.script(SLOW_TOY), research=HELD)
    gate.open()
    app, eng, events = _app(root)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:  # toasts on screen
        for text in ("first", "same news", "same news", "same news"):
            app.notify(text)
        await wait_for(pilot, lambda: "same news" in "".join(toasts(app)), 10, "the toasts")
        await pilot.pause()
        assert [t for t in toasts(app) if "same news" in t] == ["same news"], toasts(app)
        app.notify("second")
        app.notify("third")
        await wait_for(pilot, lambda: any("third" in t for t in toasts(app)), 10, "the newest toast")
        await pilot.pause()
        assert toasts(app) == ["second", "third"], toasts(app)  # at most two, the newest win
        # the pause key: the status bar says PAUSED; no toast says it again
        await wait_for(pilot, lambda: decisions(events), 60, "the baseline")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.query_one(StatusText).text.plain.startswith(" PAUSED "), 60, "PAUSED")
        assert of(events, ev.Notice, level="info") and any(n.text.startswith("paused:") for n in of(events, ev.Notice))
        assert not [n for n in app._notifications if "paused" in n.message], [n.message for n in app._notifications]
        await quit_app(pilot, app, eng)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_kill_question_is_shown_whole(tmp_path, gate, size):
    root = make_repo(tmp_path / "r", train=gate.script(), research=HELD)
    app, eng, events = _app(root)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.screen.check_action("kill", ()) is True, 60, "a run")
        screen = app.screen
        screen.current_description = "a long description of what this experiment changes, " * 2
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the kill question")
        await pilot.pause()
        label, dialog = app.screen.query_one(".question"), app.screen.query_one(".dialog")
        lines = label.render_lines(Region(0, 0, label.size.width, label.size.height))
        shown = " ".join("".join(seg.text for seg in line).strip() for line in lines)
        assert " ".join(app.screen.question.split()) == " ".join(shown.split()), shown
        assert dialog.region.contains_region(label.region) and Region(0, 0, *size).contains_region(dialog.region)
        await pilot.press("n")
        await quit_app(pilot, app, eng)


async def test_the_diff_view_of_a_killed_experiment_and_the_copy_keys(tmp_path, gate):
    root = make_repo(tmp_path / "r", train=gate.script(), research=HELD)
    gate.release(0)
    app, eng, events = _app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: gate.arrived() == 2 and app.screen.check_action("kill", ()) is True, 60, "experiment #1 to run")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the kill question")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(decisions(events)) == 2, 30, "the crash row")
        await pilot.press("p")
        main = app.screen
        table = main.query_one(ResultsTable)
        await wait_for(pilot, lambda: "1" in table.records and eng.paused, 30, "the row on screen")
        crash = decisions(events)[1]
        assert crash.status == "crash" and crash.metric is None
        assert str(table.get_row("1")[5]).startswith("‼ crash") and str(table.get_row("0")[5]).startswith("✓ keep")
        table.focus()
        table.move_cursor(row=table.get_row_index("1"))
        await pilot.press("c")
        await wait_for(pilot, lambda: app.clipboard == crash.commit, 10, "the hash copied")
        assert [n.message for n in app._notifications if n.message.startswith("copied")] == [f"copied {crash.commit[:7]}"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen.copy_text, 10, "the diff view")
        body = str(app.screen.query_one("#text-body").render())
        assert "metric —" in body and "None" not in body.split("\n\n")[0], body
        await pilot.press("c")
        await wait_for(pilot, lambda: app.clipboard.startswith("diff --git"), 10, "the diff copied")
        assert "-LR = 0.01" in app.clipboard and "+LR = 0.0125" in app.clipboard and "log tail" not in app.clipboard
        assert any(n.message.startswith("copied the diff (") for n in app._notifications)
        await pilot.press("escape")
        await quit_app(pilot, app, eng)


def test_the_detail_of_a_crash_without_an_exit_status_says_so(tmp_path):
    from autoresearch_tui.engine.records import RunRecord

    root = make_repo(tmp_path / "r")
    eng = new_session(load_cfg(root), platform=dict(TEST_PLATFORM))
    rec = RunRecord(iteration=3, status="crash", description="x", crash_reason="the run ended without an exit status")
    facts = eng.experiment_detail(rec).split("\n\n")[0]
    assert facts.splitlines() == ["commit —", "ref —", "metric —", "exit none (crashed: the run ended without an exit status)",
                                  "duration —"], facts
