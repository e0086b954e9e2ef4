"""Shared helpers: real temporary git repositories and tiny real workloads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent

# A toy "training script": the metric is a known function of its constants.
TOY_TRAIN = """\
import os, sys, time
LR = 0.01
WIDTH = 32
DEPTH = 2
MODE = "ok"
SLEEP = 0.0
val = 1.0 + (LR - 0.04) ** 2 * 100 + ((WIDTH - 64) ** 2) / 1000 + abs(DEPTH - 3) * 0.01
for i in range(3):
    print(f"step {i} loss {val + 1 / (i + 1):.3f}\\r", end="", flush=True)
time.sleep(SLEEP)
print()
print("---")
print(f"val_bpb:          {val:.6f}")
print("peak_vram_mb:     512.0")
print("training_seconds: 0.1")
"""

TOY_PREPARE = """\
# the fixed evaluator
def evaluate(x):
    return x
"""

TEST_PLATFORM = {"kind": "cpu", "summary": "CPU (test)", "advice": [], "devices": [], "detected_at": 4e9}


GATE_LIMIT_S = 120  # a held run gives up (exit 3, no metric) if the test never lets it go


class Gate:
    """Holds toy runs until the test lets them go, so that "while the run is going" lasts as long as
    the test needs, whatever the machine's load.

    A gated train.py (``gate.script(...)``) takes the next ticket when it reaches the gate (the
    first gated run gets 0, the next 1, ...; the file ``arrived-N`` holds its pid), then blocks
    before printing its metric until the test calls ``release(N)`` or ``open()``. The directory
    lives outside the repository; its absolute path is written into the script, so it reaches
    runs whatever the engine does to their environment.
    """

    def __init__(self, d: Path):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)

    def code(self, when: str = "True") -> str:
        """Python lines (module level) that wait at the gate when the expression `when` is true."""
        return (
            "def _gate(d, when, limit):\n"
            "    import os, sys, time\n"
            "    if not when:\n"
            "        return\n"
            "    n = 0\n"
            "    while True:\n"
            "        try:\n"
            "            os.close(os.open(os.path.join(d, f'ticket-{n}'), os.O_CREAT | os.O_EXCL | os.O_WRONLY))\n"
            "            break\n"
            "        except FileExistsError:\n"
            "            n += 1\n"
            "    with open(os.path.join(d, f'arrived-{n}.tmp'), 'w') as f:\n"
            "        f.write(str(os.getpid()))\n"
            "    os.rename(os.path.join(d, f'arrived-{n}.tmp'), os.path.join(d, f'arrived-{n}'))\n"
            "    print(f'gate: ticket {n} waits', flush=True)\n"
            "    end = time.time() + limit\n"
            "    while not (os.path.exists(os.path.join(d, 'open')) or os.path.exists(os.path.join(d, f'release-{n}'))):\n"
            "        if time.time() > end:\n"
            "            print(f'gate: ticket {n} was never released', flush=True)\n"
            "            sys.exit(3)\n"
            "        time.sleep(0.02)\n"
            "    print(f'gate: ticket {n} released', flush=True)\n"
            f"_gate({str(self.dir)!r}, {when}, {GATE_LIMIT_S})\n"
        )

    def script(self, train: str = TOY_TRAIN, when: str = "True", at: str = "time.sleep(SLEEP)\n") -> str:
        """`train` with the gate inserted after the line `at` (by default: before the metric)."""
        assert at in train, at
        return train.replace(at, at + self.code(when), 1)

    def release(self, *tickets: int) -> None:
        for n in tickets:
            (self.dir / f"release-{n}").touch()

    def open(self) -> None:
        """Let every run through, now and later."""
        (self.dir / "open").touch()

    def close(self) -> None:
        """Runs that reach the gate from now on wait again (unless their ticket was released)."""
        (self.dir / "open").unlink(missing_ok=True)

    def arrived(self) -> int:
        """How many runs have reached the gate so far."""
        return len([p for p in self.dir.glob("arrived-*") if not p.name.endswith(".tmp")])

    def pid(self, ticket: int) -> int:
        return int((self.dir / f"arrived-{ticket}").read_text())

    def wait_arrived(self, ticket: int, timeout: float = 120) -> int:
        """Wait until the run with this ticket waits at the gate; returns its pid. (This blocks: not
        for a test whose engine runs on the same event loop.)"""
        wait_until(lambda: (self.dir / f"arrived-{ticket}").exists(), timeout, f"run with gate ticket {ticket} to start")
        return self.pid(ticket)


def _what(what) -> str:
    return what() if callable(what) else what


def wait_until(cond, timeout: float = 60, what="", interval: float = 0.05):
    """Poll `cond` until it returns something truthy (returned); fail with a clear message after
    `timeout` s. `what` says what was awaited: a string, or a function called at the failure (to
    show the state then)."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {_what(what) or cond}")
        time.sleep(interval)


async def until(cond, timeout: float = 60, what="", interval: float = 0.02):
    """The asyncio twin of wait_until (lets the engine run while waiting)."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {_what(what) or cond}")
        await asyncio.sleep(interval)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def make_repo(
    root: Path,
    train: str = TOY_TRAIN,
    prepare: str = TOY_PREPARE,
    extra_files: dict[str, str] | None = None,
    research: dict[str, Any] | None = None,
    metric: dict[str, Any] | None = None,
    proposer: dict[str, Any] | None = None,
    write_config: bool = True,
) -> Path:
    import tomli_w

    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "Test")
    (root / "train.py").write_text(textwrap.dedent(train))
    (root / "prepare.py").write_text(textwrap.dedent(prepare))
    for name, text in (extra_files or {}).items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    if write_config:
        cfg = {
            "research": {
                "goal": "toy",
                "command": f"{PY} train.py",
                "time_budget_s": 5,
                "kill_grace_s": 1,
                "branch_tag": "t1",
                # the process-tree tests read pids the runs print: host pids, so no pid namespace
                # (the sandbox's own tests ask for it: test_sandbox.py)
                "sandbox": "none",
                **(research or {}),
            },
            "metric": {"name": "val_bpb", **(metric or {})},
            "proposer": {"kind": "mutate", **(proposer or {})},
        }
        (root / "autoresearch.toml").write_text(tomli_w.dumps(cfg))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    seed_platform(root)
    return root


def seed_platform(root: Path) -> None:
    """Skip the (slow) torch probe in CLI tests: the engine reads this cache."""
    d = root / ".autoresearch"
    d.mkdir(exist_ok=True)
    (d / "platform.json").write_text(json.dumps({**TEST_PLATFORM, "detected_at": time.time()}))


def load_cfg(root: Path, **over: Any):
    from autoresearch_tui.config import load

    cfg = load(root / "autoresearch.toml")
    for k, v in over.items():
        setattr(cfg.research, k, v)
    return cfg


def run_engine(cfg, proposer=None, max_iterations: int = 3, on_event=None, poll_s: float = 0.02):
    """Run a real engine to its end; returns (engine, events)."""
    from autoresearch_tui.launch import new_session

    eng = new_session(cfg, proposer=proposer, max_iterations=max_iterations, platform=dict(TEST_PLATFORM), poll_s=poll_s)
    events: list = []

    def sub(e):
        events.append(e)
        if on_event:
            on_event(eng, e)

    eng.subscribe(sub)
    asyncio.run(eng.run())
    return eng, events


def drive_engine(cfg, driver, proposer=None, max_iterations: int = 3, poll_s: float = 0.02):
    """Run a real engine while the coroutine `driver(eng, events)` steers it (waits on events, sends
    commands); the engine is stopped if the driver fails. Returns (engine, events, driver's result)."""
    from autoresearch_tui.launch import new_session

    eng = new_session(cfg, proposer=proposer, max_iterations=max_iterations, platform=dict(TEST_PLATFORM), poll_s=poll_s)
    events: list = []
    eng.subscribe(events.append)

    async def main():
        task = asyncio.create_task(eng.run())
        try:
            result = await driver(eng, events)
        except BaseException:
            eng.stop_now()
            try:
                await asyncio.wait_for(task, 60)
            except BaseException:  # noqa: BLE001 - the driver's failure is the one to report
                pass
            raise
        await task
        return result

    result = asyncio.run(main())
    return eng, events, result


def cli(root: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [PY, "-m", "autoresearch_tui", *args],
        cwd=root, capture_output=True, text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL,
    )


def tsv_rows(root: Path, name: str = "results.tsv") -> list[dict[str, str]]:
    lines = (root / name).read_text().splitlines()
    cols = lines[0].split("\t")
    return [dict(zip(cols, ln.split("\t"), strict=False)) for ln in lines[1:] if ln.strip()]


def jsonl_runs(root: Path) -> list[dict[str, Any]]:
    out = []
    for ln in (root / ".autoresearch" / "runs.jsonl").read_text().splitlines():
        if ln.strip():
            r = json.loads(ln)
            if r.get("kind", "run") == "run":
                out.append(r)
    return out


def pids_alive(pids: list[int]) -> list[int]:
    import psutil

    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


@pytest.fixture(autouse=True)
def _user_config(tmp_path, monkeypatch):
    """Every test has its own user configuration folder (themes, key map): never the machine's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def gate(tmp_path):
    """A Gate (see above) that is opened at the end, whatever happened: nothing stays held."""
    g = Gate(tmp_path / "gate")
    yield g
    g.open()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")
