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
    return [dict(zip(cols, ln.split("\t"))) for ln in lines[1:] if ln.strip()]


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


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")
