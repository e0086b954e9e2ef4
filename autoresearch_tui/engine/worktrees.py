"""A git worktree per slot, under `.autoresearch/worktrees/slot-<i>` (ignored, never inside the
user's tracked tree), so that concurrent runs never share a working directory.

A slot's worktree is detached: an experiment is committed there on top of the best, its ref
set, and run there; the research branch (checked out in the repository itself) moves only
when an experiment is kept. Untracked top-level files of the repository (data folders, a
virtual environment, caches) are linked into each worktree so that a run finds them where it
would in the repository. Worktrees are removed and `git worktree prune`d at the end; after a
crash the next start finds them again (a re-attached run keeps its own).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .ledger import TOOL_IGNORES, GitError, Ledger

WORKTREES = "worktrees"


def base_dir(root: Path, state_dir: Path, workdir: str = "") -> Path:
    """Where the slots' worktrees live: `[compute] workdir` (a filesystem the nodes share, for
    Slurm), else `.autoresearch/worktrees`."""
    return (root / workdir).resolve() if workdir else state_dir / WORKTREES


def slot_dir(base: Path, i: int) -> Path:
    return base / f"slot-{i}"


def untracked_top_level(led: Ledger, skip: set[str]) -> list[str]:
    """Top-level names in the repository that git does not track (ignored or not)."""
    out = led.git("ls-files", "-z", "--others", "--directory", "--no-empty-directory", check=False)
    out += led.git("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory", check=False)
    names = sorted({p.split("/", 1)[0] for p in out.split("\0") if p})
    own = {t.strip("/") for t in TOOL_IGNORES} | {".git"} | skip
    return [n for n in names if n not in own and not n.startswith(".run.log") and n != "__pycache__"]


def ensure(led: Ledger, path: Path, commit: str) -> Ledger:
    """The worktree at `path`, on `commit` (detached), created if missing; returns its ledger."""
    if not (path / ".git").exists():
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        led.git("worktree", "prune", check=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        led.git("worktree", "add", "-q", "--detach", "--force", str(path), commit)
    return Ledger(path, led.tag)


def checkout(wl: Ledger, commit: str, links: list[str], source: Path) -> None:
    """Put the worktree exactly on `commit`: tracked files as committed, a run's leftovers
    (untracked files that are not ignored) removed, the links to the repository's untracked
    files in place."""
    wl.git("checkout", "-q", "--detach", "--force", commit)
    wl.git("clean", "-q", "-f", "-d", check=False)
    link(wl.root, links, source)


def link(path: Path, names: list[str], source: Path) -> None:
    for name in names:
        dst, src = path / name, source / name
        if dst.is_symlink() or dst.exists() or not (src.exists() or src.is_symlink()):
            continue
        try:
            os.symlink(src, dst, target_is_directory=src.is_dir())
        except OSError:
            pass


def remove(led: Ledger, path: Path) -> None:
    try:
        led.git("worktree", "remove", "--force", "--force", str(path), check=False)
    except GitError:
        pass
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def prune(led: Ledger, base: Path, keep: set[Path]) -> None:
    """Remove every slot worktree under `base` but those in `keep` (a run left alive by detach), then prune."""
    if base.is_dir():
        for p in sorted(base.iterdir()):
            if p not in keep and p.name.startswith("slot-"):
                remove(led, p)
        if not any(base.iterdir()):
            base.rmdir()
    led.git("worktree", "prune", check=False)
