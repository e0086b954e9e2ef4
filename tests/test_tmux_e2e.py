"""End to end: the real `autoresearch-tui` command in a detached tmux session, driven with
send-keys and read with capture-pane, as a researcher over SSH would use it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import TOY_TRAIN, Gate, make_repo, wait_until

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

    def screen_with_attributes(self) -> str:
        """The pane with its colours and attributes as SGR escape sequences (capture-pane -e)."""
        return self.run("capture-pane", "-p", "-e", "-t", self.name, check=False)

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

    def wait_gone(self, timeout: float = 30) -> None:
        wait_until(lambda: not self.alive(), timeout, lambda: f"the app to quit; screen was:\n{self.screen()}")


_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def cell_styles(line: str) -> list[tuple[str, dict]]:
    """Each visible character of a `capture-pane -e` line with the SGR attributes it is drawn with."""
    state: dict = {}
    out: list[tuple[str, dict]] = []
    pos = 0
    for m in list(_SGR.finditer(line)) + [None]:
        end = m.start() if m else len(line)
        out.extend((ch, dict(state)) for ch in line[pos:end])
        if m is None:
            break
        pos = m.end()
        codes = [int(c) if c else 0 for c in m.group(1).replace(":", ";").split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                state.clear()
            elif c in (1, 2, 3, 4, 5, 7, 9):
                state[c] = True
            elif c in (22, 23, 24, 25, 27, 29):
                state.pop({22: 1, 23: 3, 24: 4, 25: 5, 27: 7, 29: 9}[c], None)
                if c == 22:
                    state.pop(2, None)
            elif 30 <= c <= 37 or 90 <= c <= 97:
                state["fg"] = str(c)
            elif 40 <= c <= 47 or 100 <= c <= 107:
                state["bg"] = str(c)
            elif c in (38, 48):
                n = 3 if codes[i + 1:i + 2] == [5] else 5  # 38;5;N or 38;2;R;G;B
                state["fg" if c == 38 else "bg"] = ";".join(map(str, codes[i:i + n]))
                i += n - 1
            elif c == 39:
                state.pop("fg", None)
            elif c == 49:
                state.pop("bg", None)
            i += 1
    return out


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_tui_in_tmux_panes_table_pause_and_clean_quit(tmp_path):
    gate = Gate(tmp_path / "gate")
    # every run waits at the gate before its metric: experiment #2 runs for as long as the test needs
    root = make_repo(tmp_path / "r", train=gate.script(), research={"time_budget_s": 300})
    gate.release(0, 1)  # the baseline and experiment #1 go through
    t = Tmux(tmp_path)
    env = f"-u COLUMNS -u LINES TERM=xterm-256color XDG_CONFIG_HOME={tmp_path / 'xdg'} COLORTERM=truecolor"
    t.run("new-session", "-d", "-s", t.name, "-x", "120", "-y", "40", f"cd {root} && env {env} {_command()}")
    logs = root / ".autoresearch" / "logs"
    try:
        text = t.wait_for(lambda s: "results" in s and "run log" in s and "backlog" in s, 60, "the panes")
        assert "git log autoresearch/t1" in text and "val_bpb (minimize)" in text
        # the table fills: the baseline and experiment #1
        t.wait_for(lambda s: "baseline" in s and "keep" in s, 60, "the baseline row")
        t.wait_for(lambda s: "LR 0.01 -> 0.0125" in s, 60, "an experiment row")
        gate.wait_arrived(2)  # experiment #2 is running
        t.wait_for(lambda s: s.startswith(" RUNNING "), 30, "the running badge")
        t.run("send-keys", "-t", t.name, "p")
        # the footer offers resume at once; the badge stays RUNNING while the run goes on
        text = t.wait_for(lambda s: "p Resume" in s, 30, "the footer to offer resume")
        assert text.startswith(" RUNNING "), text.splitlines()[0]
        assert len((root / "results.tsv").read_text().splitlines()) == 3  # header, baseline, #1: #2 is not recorded yet
        gate.release(2)
        # the paused loop records the run that was going, then shows PAUSED
        wait_until(lambda: len((root / "results.tsv").read_text().splitlines()) == 4, 60, "experiment #2's row")
        text = t.wait_for(lambda s: s.startswith(" PAUSED "), 30, "the paused badge")
        assert "p Resume" in text
        # nothing new starts while paused (a window: a paused loop that started a run would do so within
        # a poll of its one-second wake-up; no ticket is released, so such a run would wait and be seen)
        time.sleep(1.5)
        assert gate.arrived() == 3 and sorted(p.name for p in logs.glob("*.log")) == ["00000.log", "00001.log", "00002.log"]
        t.run("send-keys", "-t", t.name, "q")
        t.wait_gone(30)
    finally:
        gate.open()
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
    assert len((root / "results.tsv").read_text().splitlines()) == 4  # header + baseline + #1 + #2
    assert '"inflight_runs"' not in (root / ".autoresearch" / "state.json").read_text()  # no run is left in flight


CRASHY_TOY = TOY_TRAIN.replace('MODE = "ok"\n', 'MODE = "ok"\nif MODE == "crash":\n    raise SystemExit("crashed on purpose")\n')


@pytest.fixture(scope="module")
def sixteen_colour_screen(tmp_path_factory):
    """One finished session in a 16-colour terminal (TERM=screen): rows keep (#1), discard (#2) and
    crash (#3) ordered through the backlog, then one more experiment so that the cursor sits on
    row #4, not on them. Returns (plain screen, screen with SGR attributes, results.tsv rows)."""
    tmp = tmp_path_factory.mktemp("sixteen")
    root = make_repo(tmp / "r", train=CRASHY_TOY)
    (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] LR=0.02\n- [ ] LR=0.9\n- [ ] MODE=crash\n")
    t = Tmux(tmp)
    env = f"-u COLUMNS -u LINES TERM=screen TEXTUAL_COLOR_SYSTEM=standard XDG_CONFIG_HOME={tmp / 'xdg'}"
    t.run("new-session", "-d", "-s", t.name, "-x", "120", "-y", "40", f"cd {root} && env {env} {_command()} --max-iterations 4")
    try:
        text = t.wait_for(lambda s: s.startswith(" STOPPED ") and "\n│ 4 " in s, 90, "the session to end with row #4")
        attrs = t.screen_with_attributes()
        # the session has ended: the key bar offers a restart, not a pause
        assert "r Restart" in text and "Pause" not in text and "Resume" not in text
        t.run("send-keys", "-t", t.name, "q")  # nothing runs: q quits at once
        t.wait_gone(30)
    finally:
        t.run("kill-server", check=False)
    rows = (root / "results.tsv").read_text().splitlines()[1:]
    return text, attrs, [r.split("\t") for r in rows]


def _status_cells(plain: str, attrs: str) -> dict[int, tuple[str, dict, str]]:
    """iteration -> (status word, attributes of its first letter, its symbol) for the results table's rows."""
    lines, alines = plain.splitlines(), attrs.splitlines()
    header = next(i for i, ln in enumerate(lines) if "status" in ln and "commit" in ln and "metric" in ln)
    col = lines[header].index("status")
    out = {}
    for ln, aln in zip(lines[header + 1:], alines[header + 1:], strict=False):
        m = re.match(r"│ (\d+) ", ln)
        if not m:
            continue
        cells = cell_styles(aln)
        assert "".join(ch for ch, _ in cells) == ln, "the attribute parser lost characters"
        symbol, word = ln[col:].split()[:2]  # "✓ keep": the status word after its symbol
        out[int(m.group(1))] = (word, cells[ln.index(word, col)][1], symbol)
    return out


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_tui_rows_in_16_colours_name_their_status(sixteen_colour_screen):
    plain, attrs, rows = sixteen_colour_screen
    assert "results" in plain and "run log" in plain
    assert [r[3] for r in rows] == ["keep", "keep", "discard", "crash", rows[4][3]]
    cells = _status_cells(plain, attrs)
    # every row on screen says what results.tsv says, in words
    assert {n: word for n, (word, _, _) in cells.items()} == {n: r[3] for n, r in enumerate(rows)}
    # and a shape per status, whatever the colours
    assert {word: symbol for word, _, symbol in cells.values()} == {"keep": "✓", "discard": "✗", "crash": "‼"}
    assert "crashed on purpose" in plain or "exit code 1" in plain  # a crash row says why


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_tui_status_colours_differ_in_16_colours(sixteen_colour_screen):
    plain, attrs, rows = sixteen_colour_screen
    cells = _status_cells(plain, attrs)
    # the status word's own colour and attributes; the background only stripes alternate rows (zebra)
    styles = {word: {k: v for k, v in style.items() if k != "bg"} for n, (word, style, _) in cells.items() if n in (1, 2, 3)}
    assert set(styles) == {"keep", "discard", "crash"}
    assert styles["keep"] != styles["discard"], styles
    assert styles["keep"] != styles["crash"], styles
    assert styles["discard"] != styles["crash"], styles


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_wizard_in_a_folder_that_is_not_a_repository_offers_git_init_and_declined_writes_nothing(tmp_path):
    # the real command in a real terminal: the wizard offers to make the folder a repository;
    # declined, it ends as before (one line, exit 2) and nothing is written
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(TOY_TRAIN)
    t = Tmux(tmp_path)
    env = f"-u COLUMNS -u LINES TERM=xterm-256color XDG_CONFIG_HOME={tmp_path / 'xdg'} GIT_CEILING_DIRECTORIES={tmp_path}"
    t.run("new-session", "-d", "-s", t.name, "-x", "120", "-y", "40",
          f"cd {folder} && env {env} {_command()}; echo EXIT=$?; sleep 60")
    try:
        text = t.wait_for(lambda s: "git init + commit these files" in s, 60, "the offer")
        words = " ".join(text.split())  # the message wraps at the pane's width
        assert "not inside a git repository" in words and "1 file, " in words and "train.py" in words, text
        assert sorted(p.name for p in folder.iterdir()) == ["train.py"]  # asking writes nothing
        t.run("send-keys", "-t", t.name, "Escape")
        text = t.wait_for(lambda s: "EXIT=" in s, 60, "the command to end")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert lines[-1] == "EXIT=2", text
        message = "".join(lines[:-1])  # one line, wrapped by the terminal's width
        assert message.count("autoresearch-tui:") == 1 and "not inside a git repository" in message, text
        assert "unexpected" not in text and "Traceback" not in text
        assert sorted(p.name for p in folder.iterdir()) == ["train.py"]  # no autoresearch.toml, no .autoresearch/
    finally:
        t.run("kill-server", check=False)
