"""One answer to "what is the best?" after the user keeps a worse experiment with `k`.

A hand-built session (minimize, no engine): the loop keeps #1 and #4; the user keeps #5, which
the loop had discarded as worse than #4; #6 re-measures the branch after that keep. From then
on the best is #6 (the code the branch stands on), even though it is worse than #4, and every
view — summary, completion text, notes, terminal chart, progress.png, status bar, chart,
table — states that best and the same counts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autoresearch_tui.config import from_dict
from autoresearch_tui.engine.notes import render_notes
from autoresearch_tui.engine.records import History, RunRecord
from autoresearch_tui.summary import completion_text, render

T0 = 1_800_000_000.0
OVERRIDE = {"kind": "override", "iteration": 5, "status": "keep", "previous": "discard", "new_head": "6" * 40, "at": T0 + 55}


def sha(i: int) -> str:
    return f"{i}" * 40


def records(remeasured: bool = True) -> list[RunRecord]:
    def rec(i, status, metric, best_before, desc, **kw):
        return RunRecord(iteration=i, status=status, metric=metric, best_before=best_before, description=desc, commit=sha(i),
                         started_at=T0 + 10 * i, ended_at=T0 + 10 * i + 5, duration_s=5.0, **kw)

    out = [
        rec(0, "keep", 2.0, None, "baseline", is_baseline=True),
        rec(1, "keep", 1.8, 2.0, "LR 0.01 -> 0.02", mutation={"name": "LR", "old": "0.01", "new": "0.02"}),
        rec(2, "discard", 1.9, 1.8, "WIDTH 32 -> 64", mutation={"name": "WIDTH", "old": "32", "new": "64"}),
        rec(3, "crash", None, 1.8, "WIDTH 32 -> 128", crash_reason="exit code 1: out of memory"),
        rec(4, "keep", 1.7, 1.8, "DEPTH 2 -> 3", mutation={"name": "DEPTH", "old": "2", "new": "3"}),
        # the loop discarded it (worse than #4); the user kept it with `k`
        rec(5, "keep", 1.75, 1.7, "DROPOUT 0.1 -> 0.2", override=dict(OVERRIDE)),
    ]
    if remeasured:
        out += [
            rec(6, "keep", 1.76, 1.7, "re-measure after the override of #5", remeasure_of=5),
            rec(7, "discard", 1.8, 1.76, "LR 0.02 -> 0.04", mutation={"name": "LR", "old": "0.02", "new": "0.04"}),
        ]
        out[6].commit = OVERRIDE["new_head"]
    return out


def history(remeasured: bool = True) -> History:
    return History(records(remeasured), [dict(OVERRIDE)], direction="minimize")


def restarted(h: History) -> History:
    """The History a restarted session builds from runs.jsonl."""
    lines = [json.dumps(r.to_dict()) for r in h]
    return History.from_dicts([json.loads(x) for x in lines], h.events, h.direction)


@pytest.fixture
def cfg(tmp_path):
    return from_dict({"research": {"branch_tag": "t1", "command": "python train.py"}}, tmp_path / "autoresearch.toml")


# ------------------------------------------------------------------ History itself
def test_the_remeasurement_after_a_user_keep_is_the_best_even_when_worse():
    h = history()
    assert h.best().iteration == 6 and h.best().metric == 1.76
    assert h.best_ever().iteration == 4  # the loop's best measurement is still known
    assert h.baseline().iteration == 0
    assert h.improvement() == pytest.approx(-0.24)
    assert h.reference() == (1.76, 1)


def test_before_the_remeasurement_the_best_is_still_the_loops():
    h = history(remeasured=False)
    assert h.best().iteration == 4
    assert h.pending_remeasure() == {"commit": OVERRIDE["new_head"], "of": 5}
    assert history().pending_remeasure() is None


def test_the_user_kept_row_is_no_improvement_and_never_the_best():
    h = history()
    assert [r.iteration for r in h.improvements()] == [1, 4]  # biggest gain first
    assert [r.iteration for r in h.kept_by_user()] == [5]
    r5 = h.get(5)
    assert r5.kept_by_user and not r5.sets_best and r5.gain == pytest.approx(0.05)


def test_counts_are_over_experiments_without_baseline_or_remeasurement():
    h = history()
    assert [r.iteration for r in h.experiments()] == [1, 2, 3, 4, 5, 7]
    assert h.counts() == {"keep": 3, "discard": 2, "crash": 1}


def test_running_best_steps_to_the_remeasured_value():
    assert history().running_best() == [2.0, 1.8, 1.8, 1.8, 1.7, 1.7, 1.76, 1.76]


def test_the_best_survives_a_restart():
    h, again = history(), restarted(history())
    assert again.best().iteration == h.best().iteration == 6
    assert again.best().metric == h.best().metric
    assert again.counts() == h.counts()
    assert again.running_best() == h.running_best()
    assert [r.iteration for r in again.improvements()] == [1, 4]
    assert [r.iteration for r in again.kept_by_user()] == [5]
    assert again.pending_remeasure() is None


# ------------------------------------------------------------------ every view agrees
def test_summary_states_the_historys_best_and_counts(cfg):
    text = render(cfg, history(), {"summary": "CPU (test)"}, 0.0, None)
    assert f"| 2.000000 | 1.760000 | -0.240000 (-12.00%) | {OVERRIDE['new_head'][:7]} |" in text
    assert "Keep 3 · discard 2 · crash 1 (minimize val_bpb)." in text
    assert "**Total iterations:** 6" in text
    top = re.findall(r"^\| (\d+) \| (\d+) \| \w+ \| [\d.]+ \| ([+-][\d.]+) \|", text, re.MULTILINE)
    assert [(int(rank), int(it), float(g)) for rank, it, g in top] == [(1, 1, -0.2), (2, 4, -0.1)]
    kept_by_you = text.split("## Kept by you", 1)[1].split("## ", 1)[0]
    assert ("- #5 `5555555` DROPOUT 0.1 -> 0.2: 1.750000, +0.050000 vs the best before it (worse); "
            "re-measured on the branch as #6: 1.760000") in kept_by_you
    # the branch holds the loop's keeps and the re-applied commit, not the discarded original
    assert f"# git cherry-pick {sha(1)[:12]} {sha(4)[:12]} {OVERRIDE['new_head'][:12]}" in text
    assert "val_bpb 2.000000 -> 1.760000" in text


def test_summary_after_restart_is_the_same(cfg):
    assert render(cfg, restarted(history()), {}, 0.0, None) == render(cfg, history(), {}, 0.0, None)


def test_completion_text_states_the_historys_best_and_counts():
    text = completion_text(history())
    assert text.splitlines() == [
        "=== Autoresearch Complete (6 iterations) ===",
        "Baseline: 2.000000 → Best: 1.760000 (-0.240000, -12.00%)",
        "Keeps: 3 | Discards: 2 | Crashes: 1",
        "Best experiment: #6 — re-measure after the override of #5",
    ]


def test_notes_state_the_historys_best_and_counts(cfg):
    _, after = render_notes(cfg, history(), {"summary": "CPU (test)"})
    assert "Baseline 2.000000 → best 1.760000 after 6 experiments (3 keep / 2 discard / 1 crash)." in after
    wins = after.split("### Key wins", 1)[1].split("###", 1)[0].strip().splitlines()
    assert wins == ["- #1 LR 0.01 -> 0.02 → 1.800000", "- #4 DEPTH 2 -> 3 → 1.700000", "- #5 DROPOUT 0.1 -> 0.2 → 1.750000 (kept by you)"]


def test_terminal_chart_states_the_historys_best():
    from autoresearch_tui.ui.asciichart import render as chart

    h = history()
    text = chart(h.records, h.running_best(), "minimize", width=40, height=12)
    plot = "\n".join(text.splitlines()[:12])
    assert plot.count("●") == 4  # #0, #1, #4 and the re-measurement #6
    assert plot.count("○") == 1 and plot.count("·") == 2
    assert "best 1.760000" in text and "n=7" in text and "○ kept by you" in text
    # the step line ends at the re-measured value (row 9 of 0..11 for 2.0..1.7), not at #4's 1.7 (row 11)
    rows = text.splitlines()[:12]
    assert rows[9][-1] == "│" and rows[11][-1] == " "
    with pytest.raises(ValueError):
        chart(h.records, h.running_best()[:-1], "minimize")


def test_progress_plot_counts_and_line_come_from_the_history(cfg):
    from autoresearch_tui.plot import plot_title, series

    h = history()
    assert plot_title(cfg, h) == "autoresearch/t1: 6 experiments, 3 kept, 1 crashed (red lines)"
    p = series(h)
    assert p["kept_x"] == [0, 1, 4, 6] and p["user_x"] == [5] and p["crash_x"] == [3]
    assert p["best_y"] == [2.0, 1.8, 1.8, 1.7, 1.7, 1.76, 1.76]


def test_progress_plot_writes_a_png(cfg, tmp_path):
    pytest.importorskip("matplotlib")
    from autoresearch_tui.plot import write_plot

    png = write_plot(cfg, history(), tmp_path / "progress.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_status_bar_chart_and_table_show_the_same_best():
    from textual.app import App

    from autoresearch_tui.ui.widgets.chart import MetricChart
    from autoresearch_tui.ui.widgets.results import ResultsTable
    from autoresearch_tui.ui.widgets.status import StatusBar, StatusText

    class Views(App):
        def compose(self):
            yield StatusBar(clock=lambda: T0, id="status")
            yield MetricChart(id="chart")
            yield ResultsTable(id="results")

    h = history(remeasured=False)
    app = Views()
    async with app.run_test(size=(120, 30)) as pilot:
        status, chart, table = app.query_one(StatusBar), app.query_one(MetricChart), app.query_one(ResultsTable)
        table.load(h.records)
        chart.load(h)
        status.set_best(h.best(), h.baseline())
        status.refresh_status()
        await pilot.pause()
        # kept by the user, not re-measured yet: the best is still the loop's #4
        assert "best 1.700000" in app.query_one(StatusText).text.plain
        assert "best 1.700000" in str(app.query_one("#chart-numbers").render())
        sel = table.selected()
        assert isinstance(sel, RunRecord) and sel.iteration == 5
        assert str(table.get_cell("5", "status")) == "✓ keep (you)"
        # the re-measurement arrives (as a Decision would bring it)
        full = history()
        for r in full.records[6:]:
            full_best = full.running_best()[r.iteration]
            table.upsert(r)
            chart.add(r, full_best)
        status.set_best(full.best(), full.baseline())
        status.refresh_status()
        await pilot.pause()
        assert "best 1.760000" in app.query_one(StatusText).text.plain
        assert "best 1.760000" in str(app.query_one("#chart-numbers").render())
        assert chart.best == [2.0, 1.8, 1.8, 1.7, 1.7, 1.76, 1.76]
        assert table.selected().iteration == 7


def test_the_llm_prompt_states_the_historys_best():
    from autoresearch_tui.proposers.base import ProposalContext
    from autoresearch_tui.proposers.prompt import build_messages

    h = history()
    crash = h.get(3)
    ctx = ProposalContext(iteration=8, root=Path("."), files={"train.py": "LR = 0.02\n"}, read_only={}, goal="", metric="val_bpb",
                          direction="minimize", history=h.records, best=h.best(), baseline=h.baseline(), crash=crash)
    prompt = build_messages(ctx, ["train.py"], [])[1]["content"]
    assert "## Best so far\n#6 1.760000 (re-measure after the override of #5); baseline 2.000000." in prompt
    assert "#5 keep    1.750000  DROPOUT 0.1 -> 0.2" in prompt and "#3 crash   —  WIDTH 32 -> 128" in prompt
    assert "## Fix the last experiment\n#3 (WIDTH 32 -> 128) crashed" in prompt and "exit code 1: out of memory" in prompt


def test_completion_counts_a_crashed_baseline():
    crashed = RunRecord(iteration=0, status="crash", metric=None, description="baseline", commit=sha(0), is_baseline=True,
                        crash_reason="no val_bpb in the log")
    text = completion_text(History([crashed], direction="minimize"))
    assert "Crashes: 1" in text and "Baseline crashed: no val_bpb in the log" in text, text


# ------------------------------------------------------------------ noise, reference, and a lucky keep
def lucky_keep() -> History:
    """Baseline 3 runs (mean 1.0); #3 kept on runs 0.97 and 0.98; #4 re-measured #3 twice while
    being decided (1.03, 1.04): #3's mean is then 1.005 — worse than the baseline."""
    b = "b" * 40

    def base(i, v):
        return RunRecord(iteration=i, status="keep", metric=v, commit=b, is_baseline=True, description="baseline")

    return History([
        base(0, 1.01), base(1, 0.99), base(2, 1.0),
        RunRecord(iteration=3, status="keep", metric=0.975, runs=[0.97, 0.98], commit="3" * 40, description="LR 0.01 -> 0.02",
                  best_before=1.01),
        RunRecord(iteration=4, status="discard", metric=0.99, runs=[0.99, 0.99, 0.99], commit="4" * 40, description="WD 0.1 -> 0.2",
                  best_runs=[1.03, 1.04], best_commit="3" * 40, best_before=0.975),
    ], direction="minimize")


def test_noise_pools_every_repeat_and_the_reference_is_the_mean_of_all_runs_of_the_best():
    h = lucky_keep()
    assert h.measurements("3" * 40) == [0.97, 0.98, 1.03, 1.04]
    assert h.reference() == (pytest.approx(1.005), 4)
    assert h.baseline_reference() == (pytest.approx(1.0), 3)
    spread, df = h.noise_estimate()
    # baseline: 2 df, #3 (four runs): 3 df, #4: 2 df (all equal)
    ss = 0.0002 + 2 * (0.035 ** 2 + 0.025 ** 2)
    assert df == 7 and spread == pytest.approx((ss / 7) ** 0.5)
    assert h.noise_estimate([0.5, 0.7], [1.0])[1] == 7 + 1 + 1  # a candidate's runs and a new run of the best count


def test_a_best_no_better_than_the_baseline_is_never_reported_as_the_best(cfg):
    h = lucky_keep()
    assert not h.beats_baseline()
    text = completion_text(h)
    assert "Baseline: 1.000000 (mean of 3 runs) → Best: 1.000000 (mean of 3 runs) (nothing beat the baseline; " \
           "the branch measures 1.005000 (mean of 4 runs))" in text
    assert "Best experiment" not in text
    summary = render(cfg, h, {}, 0.0, None)
    assert "| 1.000000 (mean of 3 runs) | 1.000000 (mean of 3 runs) | nothing beat the baseline;" in summary
    _, after = render_notes(cfg, h, {})
    assert "Baseline 1.000000 (mean of 3 runs) → no better than the baseline (the branch measures 1.005000 (mean of 4 runs))" in after
