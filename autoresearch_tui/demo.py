"""`autoresearch-tui demo [DIR]`: the bundled example as a fresh git repository."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .config import CONFIG_NAME, Config, load, save
from .errors import UsageError

EXAMPLE = Path(__file__).parent / "example"
FILES = ["train.py", "prepare.py", "corpus.txt", "program.md"]
TORCH_HINT = (
    "the demo trains a small PyTorch model, and torch is not installed for {py}; "
    "install the extra: pip install 'autoresearch-tui[torch]' "
    "(CPU-only build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)


def torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _git(root: Path, *args: str) -> None:
    env_args = []
    probe = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True)
    if not probe.stdout.strip():
        env_args = ["-c", "user.name=autoresearch-tui demo", "-c", "user.email=demo@localhost"]
    subprocess.run(["git", *env_args, *args], cwd=root, check=True, capture_output=True, text=True)


def prepare_demo(target: Path, iterations: int | None = None, budget: float | None = None) -> tuple[Config, bool]:
    """The demo's configuration in `target`, and whether it continues an earlier demo there."""
    if not torch_available():
        raise UsageError(TORCH_HINT.format(py=sys.executable))
    if iterations is not None and iterations < 0:
        raise UsageError("demo --iterations must be 0 (until stopped) or more")
    if budget is not None and budget <= 0:
        raise UsageError("demo --budget must be a positive number of seconds")
    target = target.resolve()
    cfg_path = target / CONFIG_NAME
    if target.exists() and any(target.iterdir()):
        if not (cfg_path.exists() and (target / ".git").exists()):
            raise UsageError(f"{target}: exists and is not an earlier demo; choose another DIR (autoresearch-tui demo DIR)")
        cfg = load(cfg_path)  # an earlier demo: continue its session
        resumed = True
    else:
        resumed = False
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(EXAMPLE / name, target / name)
        cfg = load(EXAMPLE / CONFIG_NAME)
        cfg.path = cfg_path
        # the interpreter that has torch, whatever `python` means on this PATH
        cfg.research.command = f"{shlex.quote(sys.executable)} train.py"
        save(cfg)
        _git(target, "init", "-q", "-b", "main")
        _git(target, "add", *FILES, CONFIG_NAME)
        _git(target, "commit", "-q", "-m", "demo: a small character-level LM (autoresearch-tui example)")
    changed = False
    if iterations is not None and cfg.research.max_iterations != iterations:
        cfg.research.max_iterations, changed = iterations, True
    if budget is not None and cfg.research.time_budget_s != budget:
        cfg.research.time_budget_s, changed = budget, True
    if changed:
        # session settings, not a change of the experiment: keep the tree clean
        save(cfg)
        _git(target, "add", CONFIG_NAME)
        _git(target, "commit", "-q", "-m", "demo: session settings")
    return load(cfg_path), resumed
