"""Tamper checks around a run: the read-only evaluator must be byte-for-byte what was committed
at the session's start — and untouched *during* the run (an edit-use-restore changes its inode
or ctime, which no user can set back) —, a run must not move HEAD or the research branch, nor
change other refs, git's configuration or hooks (`gitguard`), the records or the lock."""

from __future__ import annotations

import hashlib
import os
import stat

from typing import Any

from . import gitguard
from .context import Ctx, Slot
from .measure import hash_files


def expected_hashes(ctx: Ctx, anchor: str) -> dict[str, str]:
    """sha256 of each read-only file as committed at `anchor`."""
    out = {}
    for p in ctx.cfg.research.read_only:
        blob = ctx.ledger.show_file(anchor, p)
        if blob is not None:
            out[p] = hashlib.sha256(blob).hexdigest()
    return out


def evaluator_changes(ctx: Ctx, slot: Slot | None = None) -> list[str]:
    """Paths of read-only files (in the slot's working tree) whose content is not what it must be
    (or that are no longer plain files: a symbolic link, a folder)."""
    root = slot.workdir if slot else ctx.root
    now = hash_files(root, list(ctx.readonly_hashes))
    return [p for p, h in ctx.readonly_hashes.items() if now.get(p) != h or not _plain_file(root / p)]


def _plain_file(path: Any) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def evaluator_stat(ctx: Ctx, slot: Slot) -> dict[str, tuple[int, ...] | None]:
    """Inode, ctime, mtime and size of each read-only file: any write or replacement changes them."""
    out: dict[str, tuple[int, ...] | None] = {}
    for p in ctx.readonly_hashes:
        try:
            st = os.lstat(slot.workdir / p)
            out[p] = (st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_mode)
        except OSError:
            out[p] = None
    return out


def restore_evaluator(ctx: Ctx, paths: list[str], slot: Slot | None = None) -> None:
    led = slot.ledger if slot is not None and slot.ledger is not None else ctx.ledger
    led.restore_paths(ctx.best_commit() or "HEAD", paths)


def check_before_run(ctx: Ctx, slot: Slot | None = None) -> None:
    bad = evaluator_changes(ctx, slot)
    if bad:
        for p in bad:  # a symbolic link or folder in its place goes first
            path = (slot.workdir if slot else ctx.root) / p
            if path.is_symlink() or path.is_file():
                path.unlink()
        restore_evaluator(ctx, bad, slot)
        ctx.notice(f"read-only file(s) {', '.join(bad)} differed from the committed evaluator before the run; restored", "warning")
    if slot is not None:
        slot.evaluator_stat = evaluator_stat(ctx, slot)


def check_after_run(ctx: Ctx, slot: Slot, commit: str) -> list[str]:
    """(blocking; under the record lock) Every tamper check after a run; each problem found is
    undone and returned as a crash reason."""
    why = []
    before = slot.evaluator_stat
    slot.evaluator_stat = {}
    if before and evaluator_stat(ctx, slot) != before:
        touched = [p for p, v in evaluator_stat(ctx, slot).items() if before.get(p) != v]
        if not evaluator_changes(ctx, slot):  # same bytes again: edited, used, restored
            restore_evaluator(ctx, touched, slot)
            why.append(f"the run rewrote the read-only evaluator ({', '.join(touched)}) while it ran (and put its bytes "
                       "back): result invalid; file restored")
    for check in (lambda: check_git_after_run(ctx, slot, commit), lambda: check_evaluator_after_run(ctx, slot)):
        w = check()
        if w:
            why.append(w)
    if ctx.git_baseline is not None:
        refs = {r.ref: r.commit for r in [*ctx.history.records, *ctx.in_flight.values()] if r.ref and len(r.commit) == 40}
        problems = gitguard.check_and_restore(ctx.ledger, ctx.git_baseline, refs)
        if problems:
            why.append("the run changed git outside its experiment (" + "; ".join(problems) + "): result invalid; restored")
    problems = ctx.results.verify(ctx.history)
    if problems:
        why.append("the run tampered with the records (" + "; ".join(problems) + "): result invalid; restored from memory")
    if ctx.lock is not None:
        problem = ctx.lock.verify()
        if problem:
            why.append(f"the run {problem}: result invalid; the lock file was written again (the session's lock holds)")
    return why


def check_evaluator_after_run(ctx: Ctx, slot: Slot | None = None) -> str:
    """'' if the evaluator is intact; else the crash reason (and the files are restored)."""
    bad = evaluator_changes(ctx, slot)
    if not bad:
        return ""
    restore_evaluator(ctx, bad, slot)
    return f"the run modified the read-only evaluator ({', '.join(bad)}): result invalid; file restored"


def check_git_after_run(ctx: Ctx, slot: Slot | None, commit: str) -> str:
    """A run must not move HEAD or the research branch; if it did, put them back and say so.
    (Called under the record lock: only a decision moves the branch.)"""
    if not commit or len(commit) != 40:
        return ""
    if slot is not None and slot.ledger is not None:
        return _check_worktree(ctx, slot, commit)
    led, branch = ctx.ledger, ctx.cfg.branch
    problems = []
    ref = f"refs/heads/{branch}"
    # one git process in the normal case: HEAD's commit and where HEAD points
    out = led.git("log", "-1", "--format=%H%x00%D", "HEAD", check=False).strip()
    head_sha, _, deco = out.partition("\0")
    if f"HEAD -> {branch}" not in [d.strip() for d in deco.split(",")]:
        problems.append("switched HEAD away from the research branch")
        led.git("symbolic-ref", "HEAD", ref, check=False)
        head_sha = led.rev(ref) or ""
    if head_sha != commit:
        problems.append("moved the research branch")
        led.git("update-ref", ref, commit, check=False)
    if not problems:
        return ""
    led.git("reset", "-q", "--hard", commit, check=False)
    led.restore_kept()
    return "the run changed the repository's git state (" + ", ".join(problems) + "): result invalid; restored"


def _check_worktree(ctx: Ctx, slot: Slot, commit: str) -> str:
    """A run in a slot's worktree: its HEAD must still be the experiment's commit, and the research
    branch (checked out in the repository) still on the best, with HEAD on it."""
    assert slot.ledger is not None
    problems = []
    if slot.ledger.git("rev-parse", "HEAD", check=False).strip() != commit:
        problems.append("moved HEAD in its worktree")
        slot.ledger.git("checkout", "-q", "--detach", "--force", commit, check=False)
    led, ref = ctx.ledger, f"refs/heads/{ctx.cfg.branch}"
    best = ctx.best_commit()
    if led.current_branch() != ctx.cfg.branch:
        problems.append("switched the repository's HEAD away from the research branch")
        led.git("symbolic-ref", "HEAD", ref, check=False)
    if best and led.rev(ref) != best:
        problems.append("moved the research branch")
        led.git("update-ref", ref, best, check=False)
        led.git("reset", "-q", "--hard", best, check=False)
        led.restore_kept()
    if not problems:
        return ""
    return "the run changed the repository's git state (" + ", ".join(problems) + "): result invalid; restored"
