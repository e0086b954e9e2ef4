"""Everything before the first run that touches disk: preflight, the lock, the branch, the
records read back, the evaluator's expected hashes, the branch put back on the best — and the
platform, detected beside the first run and cached per machine."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from ..fsio import atomic_write_text
from .context import Ctx, Slot, now
from . import sandbox
from .integrity import expected_hashes
from .preflight import preflight
from .records import History
from .state import SessionLock

PLATFORM_TTL_S = 6 * 3600


class SetupError(Exception):
    """The session cannot start; `str()` is the one-line message (exit code 2)."""


def setup_sync(ctx: Ctx, lock: SessionLock) -> tuple[bool, str, list[str]]:
    """(resumed, start branch, notices to show)."""
    notes: list[str] = []
    report = preflight(ctx.cfg, for_session=True)
    if report.errors:
        raise SetupError(report.errors[0])
    box = sandbox.decide(ctx.cfg.research.sandbox, ctx.cfg.path.name)
    if box.error:
        raise SetupError(box.error)
    try:
        lock.acquire()
    except Exception as e:  # noqa: BLE001
        raise SetupError(str(e)) from None
    ctx.lock = lock
    ctx.sandbox = box.binary
    if box.note:
        notes.append(box.note)
    led, cfg = ctx.ledger, ctx.cfg
    stale = led.clear_stale_index_lock()
    if stale:
        notes.append(stale)
    led.ensure_excludes()
    led.add_exclude("/" + cfg.research.results_file)
    name = cfg.path.name
    if led.is_tracked(name) and any(c.path == name for c in led.tracked_changes()):
        led.keep_files[name] = (ctx.root / name).read_bytes()  # the loop's resets never undo the user's edit
    resumed, start_branch = led.start_or_resume()
    st = ctx.state.read()
    if resumed and st.get("start_branch"):
        start_branch = st["start_branch"]
    fingerprint = {"metric": cfg.metric.name, "direction": cfg.metric.direction, "command": cfg.research.command}
    if resumed and st.get("fingerprint") and st["fingerprint"] != fingerprint:
        notes.append(
            f"{cfg.branch} was started with a different configuration ({json.dumps(st['fingerprint'])}); "
            "results compare only within one configuration: consider a new branch_tag"
        )
    ctx.state.update(tag=cfg.tag, start_branch=start_branch, fingerprint=fingerprint)
    ctx.results.ensure_files()
    loaded = ctx.results.load()
    notes.extend(loaded.warnings)
    ctx.history = History.from_dicts(loaded.records, loaded.events, cfg.metric.direction)
    # a number an experiment ref names is never given again, even if runs.jsonl lost its record
    taken = [int(r.rsplit("/", 1)[1]) for r in led.git("for-each-ref", "--format=%(refname)", f"refs/autoresearch/{led.tag}/",
                                                        check=False).split() if r.rsplit("/", 1)[1].isdigit()]
    if taken:
        ctx.history.reserve(max(taken) + 1)
    ctx.results.remember()
    # the evaluator's expected content: as committed at the session's start
    base = ctx.history.baseline()
    base_commit = base.commit if base and len(base.commit) == 40 else None
    ref0 = led.rev(led.experiment_ref(0)) if resumed else None
    ctx.readonly_hashes = expected_hashes(ctx, base_commit or ref0 or led.head())
    return resumed, start_branch, notes


def restore_branch_sync(ctx: Ctx) -> str | None:
    """Put the research branch on the best commit; clean tracked files. Returns a notice."""
    target = ctx.best_commit()
    if not target:
        return None
    led = ctx.ledger
    head = led.head()
    dirty = led.tracked_changes()
    if head != target or dirty:
        led.reset_hard(target)
        if head != target:
            return f"branch {ctx.cfg.branch} moved back from {head[:7]} to the best commit {target[:7]}"
        return "tracked files changed by an interrupted experiment were reset to the best commit"
    return None


# --------------------------------------------------------------------- slots
def setup_slots_sync(ctx: Ctx) -> str:
    """The slots: one per GPU group (`[compute]`), each with a worktree of its own when there are
    several. Returns a notice to show ('' = none)."""
    from . import worktrees
    from .gpus import SlotPlanError, plan_slots

    try:
        plan = plan_slots(ctx.cfg)
    except SlotPlanError as e:
        raise SetupError(str(e)) from None
    remote = ctx.executor.name != "local"  # the scheduler gives the GPUs; every run in a worktree the nodes share
    if plan.count == 1 and not remote:
        ctx.slots = [Slot(0, ctx.root, gpus=plan.gpus[0])]
        return plan.note
    led = ctx.ledger
    if ctx.cfg.compute.link_untracked:
        skip = {ctx.cfg.research.results_file.split("/", 1)[0], *ctx.cfg.research.files_in_scope, *ctx.cfg.research.read_only}
        ctx.links = worktrees.untracked_top_level(led, skip)
    head = led.head()
    slots = []
    base = _worktree_base(ctx)
    if base.is_relative_to(ctx.root) and not base.is_relative_to(ctx.paths.state_dir):
        led.add_exclude("/" + base.relative_to(ctx.root).as_posix() + "/")  # never in the user's `git status`
    for i, gpus in enumerate(plan.gpus):
        path = worktrees.slot_dir(base, i)
        try:
            wl = worktrees.ensure(led, path, head)
        except Exception as e:  # noqa: BLE001 - GitError, OSError: one clear line
            raise SetupError(f"{path}: cannot create the worktree of slot {i} ({e}); check the disk and `git worktree list`") from None
        slots.append(Slot(i, path, gpus=[] if remote else gpus, ledger=wl))
    ctx.slots = slots
    if remote:
        ctx.sets_gpus = False
        return f"up to {len(slots)} jobs in flight on {ctx.executor.name} (worktrees in {base})"
    where = ", ".join(f"slot {s.index}: GPU {','.join(s.gpus)}" for s in slots if s.gpus)
    return plan.note or f"{len(slots)} slots ({where})"


def _worktree_base(ctx: Ctx) -> Path:
    from . import worktrees

    return worktrees.base_dir(ctx.root, ctx.paths.state_dir, ctx.cfg.compute.workdir)


def cleanup_worktrees_sync(ctx: Ctx) -> None:
    """Remove the slots' worktrees (but one whose run is left alive) and prune git's records."""
    from . import worktrees

    keep = {s.workdir for s in ctx.slots if s.handle is not None and ctx.control.leaves_alive(s.kind)}
    base = _worktree_base(ctx)
    if ctx.own_trees or base.exists():
        worktrees.prune(ctx.ledger, base, keep)


# ------------------------------------------------------------- remote runs
def remote_state(ctx: Ctx, said: set[str], handle: Any, state: str) -> None:
    """A remote executor saw a run queued or running: its slot's line says so; a job pending
    longer than `pending_warn_s` is said once."""
    slot = next((s for s in ctx.slots if s.handle is handle), None)
    if slot is None:
        return
    if state == "running":
        slot.started_at = handle.started_at
        ctx.slot_state(slot, "running" if slot.kind != "baseline" else "baseline")
        return
    waited = now() - float(getattr(handle, "submitted_at", 0) or now())
    reason = getattr(handle, "extra", {}).get("pending_reason", "")
    slot.started_at = 0.0
    if slot.state != "queued":
        ctx.slot_state(slot, "queued")
    key = str(getattr(handle, "job_id", id(handle)))
    if waited > ctx.cfg.compute.pending_warn_s and key not in said:
        said.add(key)
        ctx.notice(f"#{slot.iteration}: job {key} has been pending for {waited / 60:.0f} min ({reason or 'no reason given'}); "
                   "the budget counts from its start", "warning")

# ---------------------------------------------------------------- errors


# ------------------------------------------------------------------ platform
def machine_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "autoresearch-tui" / f"platform-{socket.gethostname()}.json"


def _fresh(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and now() - float(data.get("detected_at", 0)) < PLATFORM_TTL_S:
        return data
    return None


def cached_platform(ctx: Ctx) -> dict[str, Any] | None:
    """The repository's cache (tests and `summary` read it), else this machine's."""
    return _fresh(ctx.paths.platform_cache) or _fresh(machine_cache())


def detect_in_background(ctx: Ctx, done: Callable[[dict[str, Any]], None]) -> threading.Thread:
    """Detect the platform (torch imported in a child: seconds) on a daemon thread — the first
    run does not wait for it, and quitting does not either. `done` gets the result."""

    def work() -> None:
        from .platform import advice_for, detect

        try:
            data = detect()
        except Exception as e:  # noqa: BLE001 - a thread's traceback would print over the TUI
            data = {"kind": "cpu", "summary": f"unknown ({type(e).__name__})", "advice": advice_for("cpu"), "devices": []}
        data["detected_at"] = now()
        for path in (ctx.paths.platform_cache, machine_cache()):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(data))
            except OSError:
                pass
        done(data)

    t = threading.Thread(target=work, name="autoresearch-platform", daemon=True)
    t.start()
    return t
