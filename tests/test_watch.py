"""`watch`: a second process follows a session that another process runs, through its files only,
without the lock — across partial lines, a rewritten file, a session that ends and one that resumes."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import PY, TOY_TRAIN, Gate, cli, jsonl_runs, load_cfg, make_repo, run_engine, wait_until

from autoresearch_tui.engine import events as ev
from autoresearch_tui.follow import Follower, lock_holder
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.ui.widgets.results import ResultsTable


def _session(root, n: int, out) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", str(n)], cwd=root,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _rows(events) -> list[tuple[int, str, float | None]]:
    """Every row the watcher reported, in order (a full load, then one per decision)."""
    out = []
    for e in events:
        if isinstance(e, ev.HistoryLoaded):
            out += [(r.iteration, r.status, r.metric) for r in e.records]
        elif isinstance(e, ev.Decision):
            out.append((e.record.iteration, e.record.status, e.record.metric))
    return out


def test_watch_follows_a_session_in_another_process_that_ends_and_resumes(tmp_path):
    gate = Gate(tmp_path / "gate")
    root = make_repo(tmp_path / "r", train=gate.script(TOY_TRAIN), research={"time_budget_s": 120})
    f = Follower(load_cfg(root), poll_s=0.05)
    events: list = []

    def poll_until(cond, what):
        def step():
            events.extend(f.poll())
            return cond()
        wait_until(step, timeout=60, what=what)

    events += f.poll()  # watching before the session starts: it must not keep the session out
    assert isinstance(events[0], ev.SessionStarted)
    with open(tmp_path / "s1.out", "wb") as out:
        s1 = _session(root, 2, out)
        try:
            gate.wait_arrived(0)
            poll_until(lambda: any(isinstance(e, ev.RunStarted) for e in events), "the baseline's RunStarted")
            started = next(e for e in events if isinstance(e, ev.RunStarted))
            assert started.iteration == 0 and started.log_path == str(root / ".autoresearch" / "logs" / "00000.log")
            assert lock_holder(root / ".autoresearch" / "lock") == s1.pid
            assert any(isinstance(e, ev.Notice) and f"pid {s1.pid}" in e.text for e in events)
            gate.open()
            assert s1.wait(timeout=120) == 0, (tmp_path / "s1.out").read_text()
        finally:
            gate.open()
            if s1.poll() is None:
                s1.kill()
    poll_until(lambda: any(isinstance(e, ev.Notice) and "ended" in e.text for e in events), "the session's end")
    phases = [e for e in events if isinstance(e, ev.PhaseChanged)]
    assert phases[-1].phase == ev.Phase.STOPPED
    assert any(isinstance(e, ev.RunFinished) and e.iteration == 0 for e in events)
    # resumed by a new process: followed on, no row twice
    with open(tmp_path / "s2.out", "wb") as out:
        s2 = _session(root, 1, out)
        assert s2.wait(timeout=120) == 0, (tmp_path / "s2.out").read_text()
    poll_until(lambda: len(_rows(events)) >= 4, "the resumed session's row")
    recorded = [(r["iteration"], r["status"], r["metric"]) for r in jsonl_runs(root)]
    assert len(recorded) == 4 and _rows(events) == recorded
    assert sum(isinstance(e, ev.HistoryLoaded) for e in events) == 1

    # runs.jsonl rewritten whole (a new file, same rows): nothing new, nothing twice
    jsonl = root / ".autoresearch" / "runs.jsonl"
    data = jsonl.read_bytes()
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, jsonl)
    events += f.poll()
    assert _rows(events) == recorded
    # a line still being written is read once it is complete
    last = json.loads(data.decode().splitlines()[-1])
    line = json.dumps({**last, "iteration": 4, "description": "written in two parts"}) + "\n"
    with open(jsonl, "ab") as fh:
        fh.write(line[:40].encode())
    events += f.poll()
    assert _rows(events) == recorded
    with open(jsonl, "ab") as fh:
        fh.write(line[40:].encode())
    events += f.poll()
    assert _rows(events)[-1] == (4, last["status"], last["metric"]) and len(_rows(events)) == 5


async def test_watch_screen_shows_the_rows_and_offers_no_key_that_changes_the_session(tmp_path):
    root = make_repo(tmp_path / "r")
    cfg = load_cfg(root)
    assert cli(root, "--headless", "--max-iterations", "2").returncode == 0
    before = (root / "results.tsv").read_bytes(), (root / ".autoresearch" / "runs.jsonl").read_bytes()
    app = AutoresearchApp(cfg, engine=Follower(cfg, poll_s=0.05), watching=True)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(ResultsTable)
        end = time.monotonic() + 30
        while table.row_count < 3 and time.monotonic() < end:
            await pilot.pause(0.05)
        assert table.row_count == 3
        shown = {b.id for _n, b, enabled, _t in app.screen.active_bindings.values() if enabled}
        assert not shown & {"pause", "resume", "stop", "kill", "keep", "discard", "restart", "idea"}, shown
        assert {"chart", "quit", "help"} <= shown
        assert not app.screen.query_one("#idea-input").display
        for key in ("p", "s", "x", "k", "d", "i", "r"):
            await pilot.press(key)
        await pilot.pause(0.3)
        assert isinstance(app.screen, type(app.main))  # no dialog opened
        await pilot.press("q")
        await pilot.pause(0.2)
    assert app.return_code in (0, None)
    assert ((root / "results.tsv").read_bytes(), (root / ".autoresearch" / "runs.jsonl").read_bytes()) == before


@pytest.mark.parametrize("headless", [True])
def test_watch_cli_prints_the_rows_of_a_finished_session(tmp_path, headless):
    root = make_repo(tmp_path / "r")
    run_engine(load_cfg(root), max_iterations=1)
    p = subprocess.Popen([PY, "-m", "autoresearch_tui", "watch", "--headless"], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
    finally:
        p.terminate()
    out, err = p.communicate(timeout=20)
    assert "history: 2 rows read back" in out, (out, err)
    assert "no session is running here" in out or "phase" not in out
