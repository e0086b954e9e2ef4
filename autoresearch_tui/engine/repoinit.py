"""A plain folder made a git repository for a session (the setup wizard offers it): `git init`,
the tool's ignore rules, and one commit of the files already there."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .ledger import Ledger, TOOL_IGNORES


@dataclass
class FolderFiles:
    """What `git add` would take from a folder (roughly: .gitignore is not read): the count, the
    bytes, and the top-level entries with the files under each."""

    count: int = 0
    size: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    more: bool = False  # stopped counting at the limit

    def describe(self, names: int = 6) -> str:
        """`3 files, 0.1 MB: train.py, prepare.py, data/ (1 file)`."""
        shown = [f"{name} ({_files(n)})" if name.endswith("/") else name for name, n in list(self.entries.items())[:names]]
        rest = len(self.entries) - len(shown)
        return (f"{_files(self.count)}{'+' if self.more else ''}, {self.size / 1e6:.1f} MB: " + (", ".join(shown) or "none")
                + (f" and {rest} more" if rest > 0 else ""))


def _files(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def is_repository(root: Path) -> bool:
    return Ledger.toplevel(root) is not None


def folder_files(root: Path, limit: int = 20_000) -> FolderFiles:
    """The files a first commit of `root` would hold (the tool's own files left out)."""
    tool = {p.strip("/") for p in TOOL_IGNORES}
    out = FolderFiles()
    for top in sorted(os.listdir(root)):
        if top in tool or top == ".git":
            continue
        path = os.path.join(root, top)
        if os.path.isfile(path) or os.path.islink(path):
            out.entries[top] = 1
            out.count += 1
            out.size += os.lstat(path).st_size
            continue
        n = 0
        for dirpath, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != ".git"]
            for f in files:
                n += 1
                try:
                    out.size += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
            if out.count + n >= limit:
                out.more = True
                break
        out.entries[top + "/"] = n
        out.count += n
        if out.more:
            break
    return out


def init_repository(root: Path) -> str:
    """`git init` in `root`, the tool's files ignored, and every other file committed (what
    .gitignore leaves). Returns the commit's sha. Raises GitError."""
    led = Ledger(root, "")
    led.git("init", "-q")
    led.ensure_excludes()
    led.commit_files(["."], "initial commit (autoresearch-tui setup)")
    return led.head()
