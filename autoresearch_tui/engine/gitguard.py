"""What no run may change in the repository's git: every ref but the app's own (the research
branch and the experiment refs, which are checked against the records), the configuration,
hooks, `info/` (exclude, attributes) and alternates. A snapshot is taken once the session is set
up; after each run a difference is a crash with the reason, and is undone."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .ledger import Ledger

WATCHED_DIRS = ("hooks", "info")
WATCHED_FILES = ("config", "config.worktree", "objects/info/alternates", "commondir", "shallow")


@dataclass
class GitSnapshot:
    refs: dict[str, str] = field(default_factory=dict)  # refname -> sha (the app's own left out)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path in the git dir -> (bytes, mode)


def common_dir(led: Ledger) -> Path:
    out = led.git("rev-parse", "--git-common-dir").strip()
    return (led.root / out).resolve()


def _files(gd: Path) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    names = list(WATCHED_FILES)
    for d in WATCHED_DIRS:
        for dirpath, _dirs, files in os.walk(gd / d):
            names += [os.path.relpath(os.path.join(dirpath, f), gd) for f in files]
    try:
        names += [f"worktrees/{w}/config.worktree" for w in os.listdir(gd / "worktrees")]
    except OSError:
        pass
    for n in names:
        p = gd / n
        try:
            st = os.lstat(p)
            data = os.readlink(p).encode() if os.path.islink(p) else p.read_bytes()
        except OSError:
            continue
        out[n] = (data, st.st_mode)
    return out


def _refs(led: Ledger, own: Iterable[str]) -> dict[str, str]:
    out = {}
    own = tuple(own)
    for line in led.git("for-each-ref", "--format=%(refname)%00%(objectname)", check=False).splitlines():
        name, _, sha = line.partition("\0")
        if name and not name.startswith(own):
            out[name] = sha
    return out


def own_refs(led: Ledger) -> tuple[str, str]:
    """The refs the app itself moves: the research branch and the experiment refs."""
    return f"refs/heads/{led.branch}", f"refs/autoresearch/{led.tag}/"


def snapshot(led: Ledger) -> GitSnapshot:
    return GitSnapshot(_refs(led, own_refs(led)), _files(common_dir(led)))


def check_and_restore(led: Ledger, snap: GitSnapshot, experiment_refs: dict[str, str]) -> list[str]:
    """What differs from `snap` (and experiment refs that no longer name their records' commits),
    each put back. Returns the problems, in words."""
    problems: list[str] = []
    now = _refs(led, own_refs(led))
    for name in sorted(set(now) | set(snap.refs)):
        old, new = snap.refs.get(name), now.get(name)
        if old == new:
            continue
        if old is None:
            problems.append(f"created {name}")
            led.git("update-ref", "-d", name, check=False)
        else:
            problems.append(f"{'moved' if new else 'deleted'} {name}")
            led.git("update-ref", name, old, check=False)
    if experiment_refs:
        have = dict(line.split("\0", 1) for line in led.git(
            "for-each-ref", "--format=%(refname)%00%(objectname)", own_refs(led)[1], check=False).splitlines() if "\0" in line)
        for name, sha in sorted(experiment_refs.items()):
            if have.get(name) != sha:
                problems.append(f"{'moved' if name in have else 'deleted'} the experiment ref {name}")
                led.git("update-ref", name, sha, check=False)
    gd = common_dir(led)
    files = _files(gd)
    for name in sorted(set(files) | set(snap.files)):
        old, new = snap.files.get(name), files.get(name)
        if old == new:
            continue
        p = gd / name
        if old is None:
            problems.append(f"added .git/{name}")
            try:
                p.unlink()
            except OSError:
                pass
            continue
        problems.append(f"{'changed' if new else 'deleted'} .git/{name}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink() or p.is_dir():
                p.unlink()
            p.write_bytes(old[0])
            os.chmod(p, old[1] & 0o7777)
        except OSError:
            pass
    return problems
