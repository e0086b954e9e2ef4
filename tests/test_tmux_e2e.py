"""End to end: the real `autoresearch-tui` command in a detached tmux session, driven with
send-keys and read with capture-pane, as a researcher over SSH would use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import TOY_TRAIN, make_repo

pytestmark = pytest.mark.tmux
TMUX = shutil.which("tmux")


def _command() -> str:
    exe = Path(sys.executable).parent / "autoresearch-tui"
    return str(exe) if exe.exists() else f"{sys.executable} -m autoresearch_tui"


class Tmux:
    def __init__(self, tmp: Path):
        self.sock = f"ar-{uuid.uuid4().hex[:8]}"
        self.name = "e2e"
        self.conf = tmp / "tmux.conf"
        # a fixed 120x40 window whatever tmux's defaults, and the escape-time advice of the README
        self.conf.write_text("set -g default-size 120x40\nset -sg escape-time 10\n")

    def run(self, *args: str, check: bool = True) -> str:
        p = subprocess.run([TMUX, "-L", self.sock, "-f", str(self.conf), *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(p.stderr)
        return p.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name, check=False)

    def wait_for(self, cond, timeout: float = 60, what: str = "") -> str:
        end = time.time() + timeout
        text = ""
        while time.time() < end:
            text = self.screen()
            if cond(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{text}")

    def alive(self) -> bool:
        return subprocess.run([TMUX, "-L", self.sock, "-f", str(self.conf), "has-session", "-t", self.name],
                              capture_output=True).returncode == 0


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_tui_in_tmux_panes_table_pause_and_clean_quit(tmp_path):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 0.5"))
    t = Tmux(tmp_path)
    env = f"-u COLUMNS -u LINES TERM=xterm-256color XDG_CONFIG_HOME={tmp_path / 'xdg'} COLORTERM=truecolor"
    t.run("new-session", "-d", "-s", t.name, "-x", "120", "-y", "40", f"cd {root} && env {env} {_command()}")
    try:
        text = t.wait_for(lambda s: "results" in s and "run log" in s and "backlog" in s, 60, "the panes")
        assert "git log autoresearch/t1" in text and "val_bpb (minimize)" in text
        # the table fills: the baseline and at least one experiment
        t.wait_for(lambda s: "baseline" in s and "keep" in s, 60, "the baseline row")
        t.wait_for(lambda s: "LR 0.01 -> 0.02" in s, 60, "an experiment row")
        t.run("send-keys", "-t", t.name, "p")
        text = t.wait_for(lambda s: "PAUSED" in s, 30, "the paused badge")
        assert "Resume" in text  # the footer offers resume now
        rows_before = len(list((root / ".autoresearch" / "logs").glob("*.log")))
        time.sleep(2)
        assert len(list((root / ".autoresearch" / "logs").glob("*.log"))) == rows_before  # nothing new starts
        t.run("send-keys", "-t", t.name, "q")
        end = time.time() + 30
        while t.alive() and time.time() < end:
            time.sleep(0.2)
        assert not t.alive(), "the app did not quit"
    finally:
        t.run("kill-server", check=False)
    # nothing of the app or its runs is left
    left = []
    for p in psutil.process_iter(["cwd", "cmdline"]):
        try:
            if (p.info["cwd"] or "").startswith(str(root)):
                left.append(p.info["cmdline"])
        except psutil.Error:
            pass
    assert left == []
    assert (root / "results.tsv").read_text().count("\n") >= 3
    assert not (root / ".autoresearch" / "state.json").read_text().count('"inflight"')


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_tui_readable_in_16_colours(tmp_path):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 0.5"))
    t = Tmux(tmp_path)
    env = f"-u COLUMNS -u LINES TERM=screen TEXTUAL_COLOR_SYSTEM=standard XDG_CONFIG_HOME={tmp_path / 'xdg'}"
    t.run("new-session", "-d", "-s", t.name, "-x", "120", "-y", "40", f"cd {root} && env {env} {_command()} --max-iterations 1")
    try:
        text = t.wait_for(lambda s: "baseline" in s and "keep" in s, 60, "a row in 16 colours")
        assert "results" in text and "Pause" in text
        t.run("send-keys", "-t", t.name, "q")
        t.wait_for(lambda s: "Finish this run" in s or not t.alive() or "STOPPED" in s or True, 5)
    finally:
        t.run("kill-server", check=False)
