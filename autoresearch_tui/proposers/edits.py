"""Validating and applying SEARCH/REPLACE edits, all or nothing, before anything is committed.

Rejected (with a reason that is fed back to the proposer): no edits, an absolute path, a path
with `..`, a symlink, a read-only (evaluator) file, a file out of scope, a SEARCH that matches
zero or several times, a result that does not parse (`ast.parse` for Python), a change that
changes nothing, a duplicate of an earlier experiment (the same normalized change to the same code).
"""

from __future__ import annotations

import ast
import difflib
import hashlib
from pathlib import Path, PurePosixPath

from .base import Edit


class Rejected(Exception):
    """A proposal that must not reach a commit; `str()` is the reason for the proposer."""


def normalize_path(path: str) -> str:
    return PurePosixPath(path.strip().strip("`").strip().replace("\\", "/")).as_posix()


def check_path(path: str, root: Path, scope: list[str], read_only: list[str]) -> str:
    raw = path.strip().strip("`").strip()
    if not raw:
        raise Rejected("an edit names no file")
    p = PurePosixPath(raw.replace("\\", "/"))
    if p.is_absolute() or raw.startswith("~"):
        raise Rejected(f"'{raw}' is an absolute path; name files relative to the repository, e.g. {scope[0]}")
    if ".." in p.parts:
        raise Rejected(f"'{raw}' escapes the repository ('..' is not allowed)")
    norm = p.as_posix()
    ro = {normalize_path(r) for r in read_only}
    sc = {normalize_path(s) for s in scope}
    if norm in ro:
        raise Rejected(f"'{norm}' is the read-only evaluator and may never be edited; edit only {', '.join(sorted(sc))}")
    if norm not in sc:
        raise Rejected(f"'{norm}' is out of scope; only {', '.join(sorted(sc))} may be edited")
    # symlinks anywhere on the way (the file itself or a parent folder)
    cur = Path(root)
    for part in p.parts:
        cur = cur / part
        if cur.is_symlink():
            raise Rejected(f"'{norm}' is or goes through a symbolic link, which is not allowed")
    return norm


def _find_exact(text: str, search: str) -> list[int]:
    out, start = [], 0
    while True:
        i = text.find(search, start)
        if i < 0:
            return out
        out.append(i)
        start = i + 1


def _find_loose(text: str, search: str) -> list[tuple[int, int]]:
    """Line windows whose stripped lines equal the stripped SEARCH lines: (first, end) line idx."""
    s_lines = [ln.strip() for ln in search.strip("\n").splitlines()]
    while s_lines and not s_lines[-1]:
        s_lines.pop()
    if not s_lines:
        return []
    t_lines = text.splitlines()
    stripped = [ln.strip() for ln in t_lines]
    n = len(s_lines)
    return [(i, i + n) for i in range(len(t_lines) - n + 1) if stripped[i : i + n] == s_lines]


def apply_one(text: str, edit: Edit, label: str) -> str:
    search = edit.search
    if not search.strip():
        raise Rejected(f"{label}: the SEARCH part is empty; quote the exact lines to replace")
    hits = _find_exact(text, search)
    if len(hits) == 1:
        i = hits[0]
        return text[:i] + edit.replace + text[i + len(search) :]
    if len(hits) > 1:
        raise Rejected(f"{label}: the SEARCH text matches {len(hits)} places; include more surrounding lines so it matches exactly once")
    loose = _find_loose(text, search)
    if len(loose) == 1:
        a, b = loose[0]
        lines = text.splitlines(keepends=True)
        rep = edit.replace
        if rep and not rep.endswith("\n") and b < len(lines):
            rep += "\n"
        return "".join(lines[:a]) + rep + "".join(lines[b:])
    if len(loose) > 1:
        raise Rejected(f"{label}: the SEARCH text matches {len(loose)} places; include more surrounding lines so it matches exactly once")
    raise Rejected(f"{label}: the SEARCH text was not found; copy the lines exactly as they are in the current file")


def apply_edits(
    files: dict[str, str],
    edits: list[Edit],
    root: Path,
    scope: list[str],
    read_only: list[str],
) -> dict[str, str]:
    """Apply all edits to copies of `files`; return {path: new text} of the changed files."""
    if not edits:
        raise Rejected("the answer contains no edits; give at least one SEARCH/REPLACE block")
    new = dict(files)
    for k, e in enumerate(edits, 1):
        path = check_path(e.path, root, scope, read_only)
        if path not in new:
            raise Rejected(f"'{path}' does not exist in the repository")
        new[path] = apply_one(new[path], e, f"edit {k} ({path})")
    changed = {p: t for p, t in new.items() if t != files.get(p)}
    if not changed:
        raise Rejected("the edits change nothing")
    for p, t in changed.items():
        if p.endswith(".py"):
            try:
                ast.parse(t, filename=p)
            except SyntaxError as e:
                raise Rejected(f"{p} would not parse after the edits: line {e.lineno}: {e.msg}") from None
    return changed


def _norm_lines(text: str) -> list[str]:
    out = []
    for ln in text.splitlines():
        s = " ".join(ln.split())
        if s:
            out.append(s)
    return out


def diff_hash(old: dict[str, str], new: dict[str, str]) -> str:
    """A hash of the change and of the code it changes (`old`), ignoring whitespace and line
    numbers: the same edit made to other code (after a keep elsewhere) is another experiment."""
    h = hashlib.sha256()
    for path in sorted(old):
        h.update(path.encode() + b"\0" + "\n".join(_norm_lines(old[path])).encode() + b"\1")
    for path in sorted(new):
        h.update(path.encode() + b"\0")
        for line in difflib.unified_diff(_norm_lines(old.get(path, "")), _norm_lines(new[path]), n=0, lineterm=""):
            if line.startswith(("---", "+++", "@@")):
                continue
            h.update(line.encode() + b"\n")
    return h.hexdigest()[:16]


def line_counts(old: dict[str, str], new: dict[str, str]) -> tuple[int, int]:
    """(lines added, lines removed) of the change, as `git diff --numstat` counts them."""
    added = removed = 0
    for path, text in new.items():
        for line in difflib.unified_diff(old.get(path, "").splitlines(), text.splitlines(), n=0, lineterm=""):
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
    return added, removed
