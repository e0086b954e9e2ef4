"""`watch`: a session seen from outside, through its files only — a second pair of eyes in another
SSH login, another tmux window, or a browser (`serve`).

A `Follower` reads what a session writes (`.autoresearch/runs.jsonl`, `results.tsv`,
`.autoresearch/state.json`, the backlog in `autoresearch.md`, the runs' logs) and produces the
same events a live session emits (HistoryLoaded, Decision, RunStarted, SlotsChanged, …), so the
main screen shows them unchanged. It starts nothing, writes nothing and never takes the lock: it
learns whether a session runs from the kernel's table of file locks (`/proc/locks`: who holds
the flock on `.autoresearch/lock`), so a session that starts while someone watches is not
refused. It stays correct while the session writes: a partial last line of runs.jsonl is read
when it is complete, a rewritten file is read again from the start, and a session that ends
and resumes (a new process) is followed on.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .config import Config
from .engine import events as ev
from .engine.notes import Notes
from .engine.paths import Paths
from .engine.records import History, RunRecord
from .engine.results import ResultsStore
from .engine.state import StateFile

Subscriber = Callable[[ev.Event], None]


def lock_holder(lock: Path) -> int | None:
    """The pid holding the flock on `lock` (the session), or None — without touching the lock.
    Reads /proc/locks (Linux); elsewhere, the pid in the file if that process lives."""
    try:
        st = os.stat(lock)
    except OSError:
        return None
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        text = ""
    if text:
        for line in text.splitlines():
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter has "->" after the number)
            if "FLOCK" not in parts:
                continue
            i = parts.index("FLOCK")
            try:
                pid, dev_ino = int(parts[i + 3]), parts[i + 4]
            except (IndexError, ValueError):
                continue
            if parts[1] == "->":
                continue
            if dev_ino.rsplit(":", 1)[-1] == str(st.st_ino):
                major_minor = dev_ino.rsplit(":", 1)[0].split(":")
                try:
                    if os.major(st.st_dev) == int(major_minor[0], 16) and os.minor(st.st_dev) == int(major_minor[1], 16):
                        return pid
                except (IndexError, ValueError):
                    return pid
        return None
    try:
        import psutil

        pid = int(lock.read_text().strip() or 0)
        return pid if pid and psutil.pid_exists(pid) else None
    except (OSError, ValueError):
        return None


class _Watching:
    """The proposer slot of the query-only session: watching proposes nothing."""

    name = "watch"
    idea_format = "(watching: ideas are typed in the session's own window)"

    async def aclose(self) -> None:
        pass


class Follower:
    """Follows a session's files; `subscribe` like a Session, then `await run()` (until cancelled)."""

    def __init__(self, cfg: Config, poll_s: float = 0.5, clock: Callable[[], float] = time.time):
        from .engine.session import Session

        self.cfg = cfg
        self.root = cfg.root
        self.poll_s = poll_s
        self.clock = clock
        self.paths = Paths(self.root)
        self.store = ResultsStore(self.root, cfg.research.results_file, cfg.metric.name)
        self.state = StateFile(self.paths.state_dir)
        self.notes = Notes(self.root)
        self.history = History(direction=cfg.metric.direction)
        # queries (git log, an experiment's diff and log) as the live session answers them; this
        # session is never run: it takes no lock and starts nothing
        self._queries = Session(cfg, _Watching(), platform={})  # type: ignore[arg-type]
        self._subs: list[Subscriber] = []
        self._started = False
        self._jsonl_sig: tuple[int, int, int] | None = None
        self._seen: dict[int, dict[str, Any]] = {}  # iteration -> its record as last read
        self._inflight: dict[int, dict[str, Any]] = {}
        self._slots_sent: list[Any] = []
        self._holder: int | None = None
        self._notes_sig: tuple[int, int] | None = None

    # -------------------------------------------------- what a Session offers
    def subscribe(self, fn: Subscriber) -> None:
        self._subs.append(fn)

    @property
    def metric_name(self) -> str:
        return self.cfg.metric.name

    @property
    def records(self) -> list[RunRecord]:
        return self.history.records

    @property
    def idea_format(self) -> str:
        return _Watching.idea_format

    def git_log(self, n: int = 25) -> list[tuple[str, str]]:
        return self._queries.git_log(n)

    def experiment_diff(self, rec: RunRecord) -> str:
        return self._queries.experiment_diff(rec)

    def experiment_detail(self, rec: RunRecord) -> str:
        self._queries.ctx.history = self.history
        return self._queries.experiment_detail(rec)

    def abandon(self) -> None:
        """Nothing to kill or release: watching starts nothing and holds no lock."""

    # ------------------------------------------------------------------ loop
    async def run(self) -> str:
        while True:
            for e in await asyncio.to_thread(self.poll):
                self._emit(e)
            await asyncio.sleep(self.poll_s)

    def _emit(self, e: ev.Event) -> None:
        for fn in list(self._subs):
            fn(e)

    def poll(self) -> list[ev.Event]:
        """One look at the files (blocking): the events for what changed since the last look."""
        out: list[ev.Event] = []
        if not self._started:
            self._started = True
            out.append(self._session_started())
        holder = lock_holder(self.paths.lock)
        out += self._records()
        out += self._runs(holder)
        out += self._backlog()
        if holder != self._holder:
            if holder is not None:
                out.append(ev.Notice("info", f"watching the session of pid {holder} (read-only: keys that change it are off)"))
            elif self._holder is not None:
                out.append(ev.Notice("info", f"the session (pid {self._holder}) ended; watching for the next one"))
            self._holder = holder
            out.append(self._phase())
        return out

    def _session_started(self) -> ev.SessionStarted:
        cfg, r = self.cfg, self.cfg.research
        try:
            platform = json.loads(self.paths.platform_cache.read_text())
        except (OSError, ValueError):
            platform = {}
        n = cfg.compute.slots if isinstance(cfg.compute.slots, int) else 1
        return ev.SessionStarted(branch=cfg.branch, tag=cfg.tag, start_branch="", resumed=True, metric=cfg.metric.name,
                                 direction=cfg.metric.direction, max_iterations=r.max_iterations, time_budget_s=r.time_budget_s,
                                 platform=platform if isinstance(platform, dict) else {}, proposer=f"watching ({cfg.proposer.kind})",
                                 slots=[[] for _ in range(n)])

    def _phase(self) -> ev.PhaseChanged:
        n = self.history.next_iteration
        if self._holder is None:
            return ev.PhaseChanged(ev.Phase.STOPPED, n, "no session is running here; watching for one")
        if self._inflight:
            first = min(self._inflight)
            return ev.PhaseChanged(ev.Phase.RUNNING, first, self._inflight[first].get("description", ""))
        return ev.PhaseChanged(ev.Phase.PROPOSING, n, f"watching pid {self._holder}")

    # --------------------------------------------------------------- records
    def _records(self) -> list[ev.Event]:
        try:
            st = os.stat(self.store.jsonl)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        if sig == self._jsonl_sig:
            return []
        self._jsonl_sig = sig
        loaded = self.store.load(repair=False)  # reads only; a partial last line is skipped until complete
        from_jsonl = any(d.get("source") != "results.tsv" for d in loaded.records)
        # a row results.tsv has before runs.jsonl's line is complete is read from runs.jsonl next time
        complete = [d for d in loaded.records if d.get("status") in ("keep", "discard", "crash")
                    and not (from_jsonl and d.get("source") == "results.tsv")]
        history = History.from_dicts(complete, loaded.events, self.cfg.metric.direction)
        now_seen = {r.iteration: r.to_dict() for r in history.records}
        gone = set(self._seen) - set(now_seen)
        first = not self._seen
        self.history = history
        if first or gone:  # the first look, or the file was rewritten: everything again
            self._seen = now_seen
            if not history.records and not first:
                return [ev.HistoryLoaded([], None, None)]
            best, base = history.best(), history.baseline()
            return [ev.HistoryLoaded([replace(r) for r in history.records], best and replace(best), base and replace(base))] if history.records or first else []
        out: list[ev.Event] = []
        best, base = history.best(), history.baseline()
        for rec in history.records:
            old = self._seen.get(rec.iteration)
            if old is None:
                out.append(ev.Decision(replace(rec), best and replace(best), base and replace(base)))
            elif old != now_seen[rec.iteration]:
                out.append(ev.OverrideApplied(rec.iteration, rec.status, "", replace(rec)))
        self._seen = now_seen
        return out

    # ------------------------------------------------------------------ runs
    def _runs(self, holder: int | None) -> list[ev.Event]:
        r = self.cfg.research
        entries = {int(v.get("iteration", -1)): v for v in self.state.entries("inflight_runs", "inflight")}
        entries.pop(-1, None)
        # a run already recorded is over, whatever the state file still says
        entries = {n: v for n, v in entries.items() if n not in self._seen}
        out: list[ev.Event] = []
        for n in sorted(set(self._inflight) - set(entries)):
            old = self._inflight.pop(n)
            started = float(old.get("started_at") or 0)
            out.append(ev.RunFinished(n, None, False, False, max(0.0, self.clock() - started) if started else 0.0,
                                      slot=int(old.get("slot", 0) or 0)))
        for n in sorted(set(entries) - set(self._inflight)):
            v = entries[n]
            rec = v.get("record") if isinstance(v.get("record"), dict) else {}
            info = {"description": str(rec.get("description", "")), "commit": str(rec.get("commit", "")),
                    "log_path": str(v.get("log_path", "")), "started_at": float(v.get("started_at") or 0),
                    "slot": int(v.get("slot", 0) or 0), "timeout_s": float(v.get("timeout_s") or r.effective_timeout)}
            self._inflight[n] = info
            log = info["log_path"]
            if log and not Path(log).is_absolute():
                log = str(self.root / log)
            info["log_path"] = log
            out.append(ev.RunStarted(n, info["commit"], info["description"], log, r.time_budget_s, info["timeout_s"],
                                     info["started_at"], int(v.get("pid") or 0), slot=info["slot"]))
        slots = self._slot_views()
        if out or slots != self._slots_sent:
            self._slots_sent = slots
            out.append(ev.SlotsChanged(slots))
            if self._holder is not None and holder == self._holder:
                out.append(self._phase())
        return out

    def _slot_views(self) -> list[ev.SlotView]:
        r, c = self.cfg.research, self.cfg.compute
        count = c.slots if isinstance(c.slots, int) else 1
        count = max([count, *(v["slot"] + 1 for v in self._inflight.values())])
        views = [ev.SlotView(i, [], "idle", 0, "", 0.0, r.time_budget_s, r.effective_timeout, "") for i in range(count)]
        for n, v in sorted(self._inflight.items()):
            views[v["slot"]] = ev.SlotView(v["slot"], [], "running", n, v["description"], v["started_at"], r.time_budget_s,
                                           v["timeout_s"], v["log_path"])
        return views

    # --------------------------------------------------------------- backlog
    def _backlog(self) -> list[ev.Event]:
        try:
            st = os.stat(self.notes.path)
            sig: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except (OSError, AttributeError):
            sig = None
        if sig == self._notes_sig:
            return []
        self._notes_sig = sig
        try:
            return [ev.BacklogChanged([i.to_dict() for i in self.notes.ideas()])]
        except OSError:
            return []
