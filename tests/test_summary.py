"""The summary and the session notes match the recorded session."""

from __future__ import annotations

import re

import pytest
from conftest import cli, jsonl_runs, tsv_rows


def test_summary_numbers_match_the_results(repo):
    assert cli(repo, "--headless", "--max-iterations", "6").returncode == 0
    recs = jsonl_runs(repo)
    keeps = [r for r in recs if r["status"] == "keep"]
    base, best = recs[0]["metric"], min(r["metric"] for r in keeps)
    p = cli(repo, "summary")
    assert p.returncode == 0, p.stderr
    text = (repo / "autoresearch-summary.md").read_text()
    assert p.stdout.strip() == text.strip()
    assert f"| {base:.6f} | {best:.6f} | {best - base:+.6f}" in text
    counts = {s: sum(1 for r in recs[1:] if r["status"] == s) for s in ("keep", "discard", "crash")}
    assert f"Keep {counts['keep']} · discard {counts['discard']} · crash {counts['crash']}" in text
    assert "**Total iterations:** 6" in text
    # top improvements ranked by their own gain
    gains = [float(g) for g in re.findall(r"^\| \d+ \| \d+ \| \w+ \| [\d.]+ \| ([+-][\d.]+) \|", text, re.M)]
    assert gains == sorted(gains) and len(gains) == counts["keep"]
    assert "git merge --squash autoresearch/t1" in text and "git switch main" in text
    # the session notes agree
    notes = (repo / "autoresearch.md").read_text()
    assert f"Baseline {base:.6f} → best {best:.6f} after 6 experiments" in notes
    assert "## Off limits" in notes and "`prepare.py`" in notes
    assert len(tsv_rows(repo)) == 7


def test_summary_plot_writes_a_png(repo):
    pytest.importorskip("matplotlib")
    assert cli(repo, "--headless", "--max-iterations", "2").returncode == 0
    p = cli(repo, "summary", "--plot")
    assert p.returncode == 0, p.stderr
    png = repo / "progress.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_summary_without_results_says_so(repo):
    p = cli(repo, "summary")
    assert p.returncode == 2 and "no experiments recorded yet" in p.stderr


def test_terminal_chart_shows_points_kept_and_running_best():
    from autoresearch_tui.engine.records import History
    from autoresearch_tui.ui.asciichart import render

    h = History.from_dicts([{"iteration": 0, "metric": 2.0, "status": "keep"}, {"iteration": 1, "metric": 2.5, "status": "discard"},
                            {"iteration": 2, "metric": 1.0, "status": "keep"}, {"iteration": 3, "metric": None, "status": "crash"}])
    text = render(h.records, h.running_best(), "minimize", width=40, height=10)
    rows = text.splitlines()
    plot = "\n".join(rows[:10])
    assert plot.count("●") == 2 and plot.count("·") == 1 and "─" in plot
    assert rows[0].strip().startswith("2.5")  # highest value on the top row
    assert "best 1.000000" in text and "n=3" in text
