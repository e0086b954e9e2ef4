"""The bugs that lived in the seams of the old one-class engine, each pinned by a test that
failed before the split: detach really leaves the run going, stop stops (during setup and during
a model request), the first run does not wait for platform detection, max_iterations counts
experiments that ran, the event bus delivers on the loop and reports broken subscribers, and
an engine that dies of a bug ends the TUI with exit code 1 and a crash log."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conftest import TEST_PLATFORM, TOY_TRAIN, jsonl_runs, load_cfg, make_repo, pids_alive, run_engine, tsv_rows
from llm_server import ScriptedLLM, edit
from test_engine_loop import ScriptedProposer

from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine.bus import EventBus
from autoresearch_tui.launch import new_session
from autoresearch_tui.proposers.base import ProposalError, Proposer

# a run that trains until the test releases it (a file named `release` in the repository)
GATED = TOY_TRAIN.replace("time.sleep(SLEEP)", "import pathlib\nwhile not pathlib.Path('release').exists():\n    time.sleep(0.02)")


def wait_until(cond, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or cond}")


@pytest.fixture(autouse=True)
def _user_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# ------------------------------------------------------------------ bug 1: detach
async def test_quit_leaving_the_run_going_keeps_it_alive_and_the_next_start_reattaches(tmp_path):
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.ui.screens.modals import QuitScreen

    root = make_repo(tmp_path / "r", train=GATED)
    cfg = load_cfg(root)
    eng = new_session(cfg, max_iterations=1, platform=dict(TEST_PLATFORM), poll_s=0.02)
    events: list = []
    eng.subscribe(events.append)
    app = AutoresearchApp(cfg, engine=eng)
    async with app.run_test(size=(120, 40)) as pilot:
        end = time.monotonic() + 60
        while not any(isinstance(e, ev.RunStarted) for e in events) or not app.main.running:
            assert time.monotonic() < end, "the baseline never started"
            await pilot.pause(0.05)
        pid = next(e for e in events if isinstance(e, ev.RunStarted)).pid
        await pilot.press("q")
        end = time.monotonic() + 10
        while not isinstance(app.screen, QuitScreen):
            assert time.monotonic() < end, "no quit dialog"
            await pilot.pause(0.05)
        await pilot.click("#detach")
    eng.abandon()  # what run_app does after the app has closed
    # the app is gone; the run is not
    await asyncio.sleep(0.5)
    assert pids_alive([pid]) == [pid], "leaving the run going killed it"
    assert not any(isinstance(e, ev.Decision) for e in events)
    (root / "release").write_text("go")
    eng2, events2 = await asyncio.to_thread(run_engine, load_cfg(root), ScriptedProposer([]), 0)
    rows = jsonl_runs(root)
    assert rows[0]["is_baseline"] and rows[0]["status"] == "keep", rows[0]
    assert rows[0]["metric"] == pytest.approx(2.124)
    notes = [e.text for e in events2 if isinstance(e, ev.Notice)]
    assert any("re-attached to experiment #0" in t or "ended while the app was away" in t for t in notes), notes


# ------------------------------------------------------------------ bug 3: stop stops
def test_a_stop_before_setup_ends_starts_no_run(repo):
    cfg = load_cfg(repo)
    eng = new_session(cfg, max_iterations=3, platform=dict(TEST_PLATFORM), poll_s=0.02)
    events: list = []
    eng.subscribe(events.append)
    eng.stop_now()  # Ctrl-C / s / SIGTERM while the session is still setting up
    reason = asyncio.run(eng.run())
    assert reason == "stopped by the user"
    assert not [e for e in events if isinstance(e, ev.RunStarted)]
    assert tsv_rows(repo) == []


def test_a_stop_during_a_slow_model_request_ends_the_session_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedLLM([{"delay": 60, **edit("slow", "WIDTH = 32", "WIDTH = 64")}]) as srv:
        root = make_repo(tmp_path / "r", proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base,
                                                    "request_timeout_s": 120, "max_attempts": 1, "pipeline": False})
        stopped_at: list[float] = []

        def on_event(eng, e):
            if isinstance(e, ev.PhaseChanged) and e.phase == ev.Phase.PROPOSING and not stopped_at:
                def later():
                    wait_until(lambda: srv.requests, 60, "the model request")
                    stopped_at.append(time.monotonic())
                    loop.call_soon_threadsafe(eng.stop_now)

                loop = asyncio.get_running_loop()
                threading.Thread(target=later, daemon=True).start()

        eng, events = run_engine(load_cfg(root), max_iterations=3, on_event=on_event)
        ended = time.monotonic()
    assert eng.end_reason == "stopped by the user"
    assert stopped_at and ended - stopped_at[0] < 30, "the stop waited for the model's answer"
    assert len(tsv_rows(root)) == 1  # the baseline only: nothing started after the stop


# ------------------------------------------------------------ bug 4: no waiting for detection
def test_the_baseline_starts_before_platform_detection_ends(repo):
    (repo / ".autoresearch" / "platform.json").unlink()  # no cache: detection must run
    cfg = load_cfg(repo)
    eng = new_session(cfg, proposer=ScriptedProposer([]), max_iterations=0, poll_s=0.02)
    order: list[str] = []
    eng.subscribe(lambda e: order.append(type(e).__name__))
    asyncio.run(eng.run())
    assert "RunStarted" in order
    if "PlatformDetected" in order:
        assert order.index("RunStarted") < order.index("PlatformDetected")
    t = next((t for t in threading.enumerate() if t.name == "autoresearch-platform"), None)
    if t is not None:
        t.join(180)
    # detection finished beside the run and is cached for this machine and this repository
    machine = list((repo.parent / "cache" / "autoresearch-tui").glob("platform-*.json"))
    assert machine and '"summary"' in machine[0].read_text()
    assert '"summary"' in (repo / ".autoresearch" / "platform.json").read_text()


# ------------------------------------------------------------ bug 5: what max_iterations counts
class FlakyProposer(Proposer):
    """Fails the first `fail` rounds like a provider that is down, then answers from a script."""

    name = "flaky"

    def __init__(self, fail: int, answers):
        self.fail = fail
        self.inner = ScriptedProposer(answers)

    async def propose(self, ctx):
        if self.fail > 0:
            self.fail -= 1
            raise ProposalError("provider down (503)", retryable=True)
        return await self.inner.propose(ctx)


def _run_fast_backoff(cfg, proposer, n):
    eng = new_session(cfg, proposer=proposer, max_iterations=n, platform=dict(TEST_PLATFORM), poll_s=0.02)
    eng.gate.backoff_base_s = 0.01
    events: list = []
    eng.subscribe(events.append)
    asyncio.run(eng.run())
    return eng, events


def test_failed_proposal_rounds_do_not_count_as_iterations(repo):
    prop = FlakyProposer(2, [("LR up", [("train.py", "LR = 0.01", "LR = 0.02")]), ("WIDTH up", [("train.py", "WIDTH = 32", "WIDTH = 48")])])
    eng, events = _run_fast_backoff(load_cfg(repo), prop, 2)
    assert len([e for e in events if isinstance(e, ev.ProposalFailed)]) == 2
    assert [r["description"] for r in jsonl_runs(repo)] == ["baseline", "LR up", "WIDTH up"]
    assert eng.end_reason == "reached max_iterations (2)"


def test_a_provider_that_stays_down_ends_the_session_after_max_failed_rounds(tmp_path):
    root = make_repo(tmp_path / "r", proposer={"max_failed_rounds": 3})
    eng, events = _run_fast_backoff(load_cfg(root), FlakyProposer(100, []), 4)
    assert len([e for e in events if isinstance(e, ev.ProposalFailed)]) == 3
    assert "failed 3 rounds in a row" in eng.end_reason and "flaky proposer" in eng.end_reason
    assert [r["description"] for r in jsonl_runs(root)] == ["baseline"]


def test_answers_that_are_always_rejected_end_the_session_too(tmp_path):
    root = make_repo(tmp_path / "r", proposer={"max_failed_rounds": 2})
    bad = [("edit the evaluator", [("prepare.py", "return x", "return 0")])] * 40
    eng, events = _run_fast_backoff(load_cfg(root), ScriptedProposer(bad), 4)
    assert len([e for e in events if isinstance(e, ev.ProposalFailed)]) == 2
    assert "failed 2 rounds in a row" in eng.end_reason
    assert len(tsv_rows(root)) == 1


# ------------------------------------------------------------------ the event bus
def test_bus_delivers_events_from_worker_threads_on_the_loop_and_reports_a_raising_subscriber():
    bus = EventBus()
    seen: list[tuple[str, int]] = []
    errors: list[str] = []
    bus.on_error = lambda fn, e, tb: errors.append(tb)

    def broken(e):
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append((e.text, threading.get_ident())))

    async def main():
        bus.bind(asyncio.get_running_loop())
        t = threading.Thread(target=lambda: bus.emit(ev.Notice("info", "from a thread")))
        t.start()
        await asyncio.to_thread(t.join)
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.01)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert seen == [("from a thread", loop_thread)]
    assert len(errors) == 1 and "RuntimeError: subscriber bug" in errors[0] and "Traceback" in errors[0]


def test_a_raising_subscriber_is_logged_with_its_traceback_and_the_session_goes_on(repo):
    def broken(e):
        if isinstance(e, ev.Decision):
            raise KeyError("no such column")

    eng, events = run_engine(load_cfg(repo), max_iterations=1, on_event=lambda eng, e: broken(e))
    assert len(tsv_rows(repo)) == 2
    log = (repo / ".autoresearch" / "errors.log").read_text()
    assert "KeyError: 'no such column'" in log and "Traceback" in log
    notes = [e.text for e in events if isinstance(e, ev.Notice) and e.level == "error"]
    assert len([t for t in notes if "errors.log" in t]) == 1  # said once, not at every event


# ------------------------------------------------------------ one worker-error handler
class BuggyProposer(Proposer):
    name = "buggy"

    async def propose(self, ctx):
        raise AssertionError("unreachable")

    def can_address(self, idea, ctx):
        raise RuntimeError("a bug in the proposer")


async def test_an_engine_error_in_the_tui_writes_a_crash_log_and_exits_1(repo):
    from autoresearch_tui.ui.app import AutoresearchApp

    cfg = load_cfg(repo)
    eng = new_session(cfg, proposer=BuggyProposer(), max_iterations=2, platform=dict(TEST_PLATFORM), poll_s=0.02)
    assert eng.add_idea("try something")
    app = AutoresearchApp(cfg, engine=eng)
    async with app.run_test(size=(120, 40)) as pilot:
        end = time.monotonic() + 60
        while app.is_running and time.monotonic() < end:
            await pilot.pause(0.05)
    assert app.return_code == 1
    assert app.failure is not None and "a bug in the proposer" in str(app.failure)
    crash = list((repo / ".autoresearch").glob("crash-*.log"))
    assert crash and "RuntimeError: a bug in the proposer" in crash[0].read_text()


# ------------------------------------------------------------ bug 2: one answer to "best"
def test_keeping_a_worse_experiment_makes_its_remeasurement_the_best_in_every_view(repo):
    prop = ScriptedProposer([("worse LR", [("train.py", "LR = 0.01", "LR = 0.5")])])

    def on_event(eng, e):
        if isinstance(e, ev.Decision) and e.record.iteration == 1:
            assert e.record.status == "discard"
            eng.override(1, "keep")

    eng, events = run_engine(load_cfg(repo), proposer=prop, max_iterations=2, on_event=on_event)
    rows = jsonl_runs(repo)
    assert [r["status"] for r in tsv_rows(repo)] == ["keep", "keep", "keep"]  # #1 kept by the user
    assert rows[2]["remeasure_of"] == 1
    worse = rows[2]["metric"]
    assert worse > rows[0]["metric"] + 1  # LR 0.5 is far worse than the baseline
    last = [e for e in events if isinstance(e, ev.Decision)][-1]
    assert last.record.iteration == 2 and last.best.iteration == 2 and last.best.metric == pytest.approx(worse)
    assert eng.history.best().iteration == 2
    # the same answer after a restart
    eng2, events2 = run_engine(load_cfg(repo), proposer=ScriptedProposer([]), max_iterations=1)
    loaded = next(e for e in events2 if isinstance(e, ev.HistoryLoaded))
    assert loaded.best.iteration == 2 and loaded.baseline.iteration == 0
    # and in the summary: the best is the re-measurement; the user's keep is no "improvement"
    text = (repo / "autoresearch-summary.md").read_text()
    assert f"{worse:.6f}" in text.split("## Results", 1)[1].split("##", 1)[0]
    top = text.split("## Top improvements", 1)[1].split("\n## ", 1)[0]
    assert "worse LR" not in top


# ------------------------------------------------------------ stop and pause between the steps
def test_a_stop_after_the_commit_takes_the_experiment_back_and_requeues_its_idea(repo):
    from conftest import git

    cfg = load_cfg(repo)
    eng = new_session(cfg, max_iterations=3, platform=dict(TEST_PLATFORM), poll_s=0.02)  # the mutate proposer
    assert eng.add_idea("LR=0.02")
    events: list = []

    def on(e):
        events.append(e)
        if isinstance(e, ev.PhaseChanged) and e.phase == ev.Phase.COMMITTING:
            eng.stop_now()  # lands between the commit and the start of its run

    eng.subscribe(on)
    assert asyncio.run(eng.run()) == "stopped by the user"
    rows = jsonl_runs(repo)
    assert [r["description"] for r in rows] == ["baseline"]
    assert not [e for e in events if isinstance(e, ev.RunStarted) and e.iteration == 1]
    assert git(repo, "rev-parse", "HEAD").strip() == rows[0]["commit"]  # the branch is back on the measured best
    assert "refs/autoresearch/t1/1" not in git(repo, "for-each-ref", "--format=%(refname)")
    assert "[ ] LR=0.02" in (repo / "autoresearch.md").read_text()  # queued again, not stuck as running
    assert "pending_commits" not in (repo / ".autoresearch" / "state.json").read_text()
    # and the next start records no made-up crash
    run_engine(load_cfg(repo), proposer=ScriptedProposer([]), max_iterations=1)
    assert [r["status"] for r in jsonl_runs(repo)] == ["keep"]


class PausingProposer(Proposer):
    """Answers once; the user presses pause while it is thinking."""

    name = "pausing"

    def __init__(self):
        self.session = None
        self.calls = 0

    async def propose(self, ctx):
        from autoresearch_tui.proposers.base import Edit, Proposal

        self.calls += 1
        if self.calls > 1:
            raise ProposalError("nothing more", exhausted=True, retryable=False)
        self.session.pause()
        return Proposal("LR up", [Edit("train.py", "LR = 0.01", "LR = 0.02")])


def test_a_proposal_that_arrives_while_paused_waits_for_resume(repo):
    prop = PausingProposer()
    eng = new_session(load_cfg(repo), proposer=prop, max_iterations=1, platform=dict(TEST_PLATFORM), poll_s=0.02)
    prop.session = eng
    events: list = []
    state: dict = {}

    def on(e):
        events.append(e)
        if isinstance(e, ev.RunStarted) and e.iteration == 1:
            state["started_while_paused"] = eng.paused
        if isinstance(e, ev.PhaseChanged) and e.phase == ev.Phase.PAUSED and "resumed" not in state:
            state["starts_while_paused"] = len([x for x in events if isinstance(x, ev.RunStarted)])
            state["resumed"] = True
            asyncio.get_running_loop().call_later(0.3, eng.resume)

    eng.subscribe(on)
    asyncio.run(eng.run())
    assert state["starts_while_paused"] == 1  # only the baseline had started when it paused
    assert state["started_while_paused"] is False  # experiment #1 started only after resume
    assert [r["description"] for r in jsonl_runs(repo)] == ["baseline", "LR up"]  # then the held proposal ran
    assert prop.calls == 1  # it was kept, not asked for again
