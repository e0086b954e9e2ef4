"""Snapshot tests at 120x40 with frozen data, in two themes (pytest-textual-snapshot).

Regenerate after an intended change of the look: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest
from conftest import TEST_PLATFORM, load_cfg, make_repo

from autoresearch_tui.engine import events as ev
from autoresearch_tui.launch import new_session
from autoresearch_tui.engine.records import RunRecord
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.ui.widgets.gitlog import GitLogPane

FROZEN_NOW = 1_800_000_000.0
METRICS = [(2.124, "keep", "baseline"), (2.074, "keep", "LR 0.01 -> 0.02"), (2.034, "keep", "LR 0.02 -> 0.04"),
           (2.194, "discard", "LR 0.04 -> 0.08"), (1.010, "keep", "WIDTH 32 -> 64"), (None, "crash", "WIDTH 64 -> 128"),
           (1.020, "discard", "DEPTH 2 -> 1"), (1.000, "keep", "DEPTH 2 -> 3")]


def frozen_records():
    recs, best = [], None
    for i, (m, status, desc) in enumerate(METRICS):
        r = RunRecord(iteration=i, commit=f"{i:x}abc{i}def0123456789abcdef0123456789abcde"[:40], metric=m, status=status,
                      description=desc, memory_gb=0.5 if m is not None else None, is_baseline=i == 0,
                      delta_vs_best=(m - best) if (m is not None and best is not None) else None)
        if status == "crash":
            r.crash_reason = "exit code 1: RuntimeError: out of memory"
        if i == 6:
            r.idea = "DEPTH=1"
        recs.append(r)
        if status == "keep":
            best = m
    return recs


@pytest.fixture(autouse=True)
def _user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _main_app(tmp_path, theme):
    root = make_repo(tmp_path / "repo", research={"branch_tag": "nov23", "max_iterations": 20})
    log = tmp_path / "run.log"
    log.write_text("".join(f"step {i:4d} | loss {3.2 - i * 0.01:.4f}\n" for i in range(40)) + "step   41 | loss 2.7900\r")
    cfg = load_cfg(root)
    eng = new_session(cfg, platform=dict(TEST_PLATFORM))
    app = AutoresearchApp(cfg, engine=eng, clock=lambda: FROZEN_NOW, run_engine=False)
    recs = frozen_records()

    async def before(pilot):
        app.theme = theme
        screen = app.main
        status = screen.query_one("#status")
        status.session_start = FROZEN_NOW - 3725
        best, base = recs[7], recs[0]
        for e in [
            ev.SessionStarted("autoresearch/nov23", "nov23", "main", False, "val_bpb", "minimize", 20, 300.0, dict(TEST_PLATFORM)),
            ev.HistoryLoaded(recs, best, base),
            ev.BacklogChanged([{"text": "DEPTH=1", "status": "tried", "outcome": "#6 discard (1.020000)"},
                               {"text": "try a cosine schedule", "status": "queued", "outcome": ""}]),
            ev.PhaseChanged("running", 8, "LR 0.04 -> 0.06"),
            ev.RunStarted(8, "8abc8def0123", "LR 0.04 -> 0.06", str(log), 300.0, 600.0, FROZEN_NOW - 125),
        ]:
            screen.apply(e)
        screen.query_one(GitLogPane).set_log([("8abc8de", "DEPTH 2 -> 3"), ("4abc4de", "WIDTH 32 -> 64"),
                                              ("2abc2de", "LR 0.02 -> 0.04"), ("1abc1de", "LR 0.01 -> 0.02"), ("0abc0de", "init")])
        screen.query_one("#logpane").poll()
        await pilot.pause()

    return app, before


@pytest.mark.parametrize("theme", ["autoresearch-night", "autoresearch-paper"])
def test_main_screen_snapshot(snap_compare, tmp_path, theme):
    app, before = _main_app(tmp_path, theme)
    assert snap_compare(app, terminal_size=(120, 40), run_before=before)


@pytest.mark.parametrize("theme", ["autoresearch-night", "autoresearch-phosphor"])
def test_wizard_snapshot(snap_compare, tmp_path, theme):
    root = make_repo(tmp_path / "myproject", write_config=False)
    app = AutoresearchApp(None, config_path=root / "autoresearch.toml",
                          wizard_options={"env": {}, "probe_local": False, "platform": dict(TEST_PLATFORM), "tag": "nov23"})

    async def before(pilot):
        app.theme = theme
        app.screen.query_one("#f-time_budget_s").value = "300"
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=before)
