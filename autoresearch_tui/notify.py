"""Notifications: what a researcher who walked away wants to hear, sent through apprise
(ntfy, Slack, Discord, Telegram, e-mail, webhooks… from one URL list, `[notify] urls`).

A `Notifier` is one more subscriber of a session's events. It picks the few that matter
(`[notify] on`): a new best, the session's end, three crashes in a row, a pause, and a stall (no
experiment finished for 3 × the timeout). Sending happens on a thread of its own: a slow or dead
endpoint never holds up the loop, and a failed send is a notice, never a stop.

The URLs carry secrets (a token, a webhook path, a password): they are never printed or written.
A target is named by its number and scheme (`#2 slack://…`), apprise's own log lines are kept off
the terminal, and what it said about a failure is redacted before it becomes a notice.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .config import NOTIFY_EVENTS, Config
from .engine import events as ev
from .fsio import clean_text, fmt_metric

CRASH_STREAK = 3  # crashes in a row that make a "crash_streak" message
STALL_FACTOR = 3.0  # no experiment finished for this many timeouts: "stalled"
SEND_TIMEOUT_S = 10.0  # one target's request
FLUSH_AT_EXIT_S = 15.0  # what the app waits, once the session ended, for messages still queued

NoticeFn = Callable[[str, str], None]  # (text, level)


@dataclass
class Message:
    kind: str  # one of NOTIFY_EVENTS
    body: str


def target_label(i: int, url: str) -> str:
    """How a target is named in notices and logs: its number and scheme, never the rest."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"#{i} {scheme}://…"


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret (all but the scheme and the host), longest first:
    redacted from anything apprise says about a send."""
    rest = url.split("://", 1)[-1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1].split(":")[0]
    parts = {p for p in re.split(r"[/:@?&=#]+", rest) if len(p) >= 3 and p != host}
    return sorted([rest, *parts], key=len, reverse=True)


def redact_url_parts(text: str, urls: list[str]) -> str:
    for u in urls:
        for s in url_secrets(u):
            text = text.replace(s, "[redacted]")
    return text


class _Collect(logging.Handler):
    """apprise's log lines, kept in memory (the sending thread's only): they may name the URL."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.lines.append(record.getMessage())


def _quiet_apprise() -> _Collect:
    log = logging.getLogger("apprise")
    log.propagate = False  # never Python's last-resort stderr handler (it would garble the TUI)
    for h in list(log.handlers):
        if isinstance(h, _Collect):
            return h
    h = _Collect()
    log.addHandler(h)
    return h


class Notifier:
    """Subscribe it to a session (`session.subscribe(notifier)`); `notice` receives failures."""

    def __init__(self, urls: list[str], on: list[str], metric: str, direction: str, tag: str, timeout_s: float,
                 notice: NoticeFn, clock: Callable[[], float] = time.time, stall_after_s: float | None = None):
        self.urls = list(urls)
        self.on = set(on) & set(NOTIFY_EVENTS)
        self.metric = metric
        self.direction = direction
        self.tag = tag
        self.notice = notice
        self.clock = clock
        self.stall_after_s = stall_after_s if stall_after_s is not None else STALL_FACTOR * timeout_s
        self.title = f"autoresearch {tag}"
        self.sent: list[Message] = []  # what went out (tests, and the summary of a night)
        self._targets: list[tuple[str, Any]] = []
        self._q: queue.Queue[Message | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()
        # what the events said so far
        self._crashes: list[int] = []
        self._last_crash = ""
        self._paused = False
        self._pause_reason = ""
        self._best: Any = None
        self._done = 0
        self._running = False  # between SessionStarted and SessionEnded
        self._last_progress = clock()
        self._stall_said = False
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        if not self.urls or not self.on:
            return
        try:
            import apprise
        except ImportError:
            self.notice("notifications are configured but apprise is not installed (pip install apprise); none are sent", "warning")
            return
        self._log = _quiet_apprise()
        for i, url in enumerate(self.urls, 1):
            label = target_label(i, url)
            try:
                a = apprise.Apprise()
                ok = a.add(url)
            except Exception:  # noqa: BLE001 - a plugin that raises on a bad URL
                ok = False
            if ok:
                self._targets.append((label, a))
            else:
                self.notice(f"notify: [notify] urls entry {label} is not understood by apprise; it is skipped", "warning")
        self._log.lines.clear()
        if self._targets:
            self._thread = threading.Thread(target=self._sender, name="autoresearch-notify", daemon=True)
            self._thread.start()

    @property
    def active(self) -> bool:
        return bool(self._targets)

    # ------------------------------------------------------------ the events
    def __call__(self, e: ev.Event) -> None:
        if not self._targets:
            return
        if isinstance(e, ev.SessionStarted):
            self._running, self._last_progress, self._stall_said = True, self.clock(), False
        elif isinstance(e, ev.HistoryLoaded):
            self._best = e.best
        elif isinstance(e, ev.Decision):
            self._decision(e)
        elif isinstance(e, ev.Notice) and "paused" in e.text:  # the pause key's notice, or the cost cap's
            self._pause_reason = e.text
        elif isinstance(e, ev.PhaseChanged):
            if e.paused and not self._paused:
                why = self._pause_reason.removeprefix("paused:").strip()
                hint = "" if "resume" in why else "; resume with p in the app"
                self._send("paused", f"paused at #{e.iteration}" + (f": {why}" if why else "") + hint)
                self._pause_reason = ""
            if not e.paused and self._paused:
                self._last_progress = self.clock()  # the pause does not count towards a stall
            self._paused = e.paused
        elif isinstance(e, ev.SessionEnded):
            self._running = False
            best = self._best
            tail = f"; best {self.metric} {fmt_metric(best.metric)} (#{best.iteration})" if best is not None else ""
            self._send("session_end", f"session ended: {e.reason}; {self._done} experiments{tail}")

    def _decision(self, e: ev.Decision) -> None:
        r = e.record
        self._last_progress, self._stall_said = self.clock(), False
        self._done = e.session_done or self._done + 1
        if r.status == "crash" and r.is_experiment:
            self._crashes.append(r.iteration)
            self._last_crash = r.crash_reason
            if len(self._crashes) == CRASH_STREAK:
                self._send("crash_streak", f"{CRASH_STREAK} crashes in a row (#{self._crashes[0]}–#{self._crashes[-1]}); "
                                           f"last: {self._last_crash[:120] or 'no reason recorded'}")
        elif r.status in ("keep", "discard"):
            self._crashes = []
        new_best = e.best is not None and e.best.iteration == r.iteration and r.sets_best and r.is_experiment
        if new_best:
            self._send("new_best", self._best_text(r))
        self._best = e.best

    def _best_text(self, r: Any) -> str:
        change = ""
        before = r.best_before
        if before is None and self._best is not None:
            before = self._best.metric
        if before and r.metric is not None:
            pct = (r.metric - before) / abs(before) * 100
            change = f" ({pct:+.1f}%)".replace("-", "−")
        return f"#{r.iteration} new best {self.metric} {fmt_metric(r.metric)}{change}: {r.description}"

    def check_stall(self) -> None:
        """Say once that no experiment finished for 3 × the timeout (the sending thread calls this)."""
        if (self._running and not self._paused and not self._stall_said and self.stall_after_s > 0
                and self.clock() - self._last_progress > self.stall_after_s):
            self._stall_said = True
            mins = (self.clock() - self._last_progress) / 60
            self._send("stalled", f"stalled: no experiment has finished for {mins:.0f} min "
                                  f"({STALL_FACTOR:g} × the timeout); check the machine")

    # ---------------------------------------------------------------- sending
    def _send(self, kind: str, body: str) -> None:
        if kind not in self.on or not self._targets:
            return
        body = clean_text(body)
        if len(body) > 300:
            body = body[:299] + "…"
        self._q.put(Message(kind, body))

    def _sender(self) -> None:
        tick = max(0.05, min(30.0, self.stall_after_s / 10)) if self.stall_after_s > 0 else 30.0
        while True:
            try:
                msg = self._q.get(timeout=tick)
            except queue.Empty:
                self.check_stall()
                continue
            if msg is None:
                self._q.task_done()
                return
            try:
                self._deliver(msg)
            finally:
                self._q.task_done()
            self.check_stall()

    def _deliver(self, msg: Message) -> None:
        for label, a in self._targets:
            self._log.lines.clear()
            try:
                ok = bool(a.notify(body=msg.body, title=self.title))
                why = "; ".join(self._log.lines[-2:])
            except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed send, never a stop
                ok, why = False, f"{type(exc).__name__}: {exc}"
            why = redact_url_parts(clean_text(why), self.urls)[:200]
            if ok:
                self.sent.append(msg)
                if label in self._failing:
                    self._failing.discard(label)
                    self.notice(f"notify: {label} works again", "info")
            elif label not in self._failing:  # said once until it works again
                self._failing.add(label)
                self.notice(f"notify: sending the {msg.kind} message to {label} failed" + (f" ({why})" if why else "")
                            + "; the session goes on", "warning")

    def flush(self, timeout: float = FLUSH_AT_EXIT_S) -> bool:
        """Wait (bounded) until every queued message was tried; True if the queue is empty."""
        if self._thread is None or not self._thread.is_alive():
            return self._q.unfinished_tasks == 0
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._q.unfinished_tasks == 0

    def close(self, timeout: float = FLUSH_AT_EXIT_S) -> None:
        """Send what is queued (bounded), then stop the thread. Called when the session is over and
        before the process exits: at interpreter exit (atexit) apprise can no longer start the
        threads it sends with."""
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout=1.0)


def attach(session: Any, cfg: Config, clock: Callable[[], float] = time.time) -> Notifier | None:
    """Subscribe a Notifier to `session` when `[notify] urls` lists targets; failures become the
    session's notices (thread-safe: the bus hands them to the loop)."""
    n = cfg.notify
    if not n.urls or not n.on:
        return None

    def notice(text: str, level: str) -> None:
        session.bus.emit(ev.Notice(level, text))

    notifier = Notifier(n.urls, n.on, cfg.metric.name, cfg.metric.direction, cfg.tag, cfg.research.effective_timeout, notice,
                        clock=clock)
    if notifier.active:
        session.subscribe(notifier)
    return notifier


def problems(cfg: Config) -> list[str]:
    """For `check`: the URLs apprise does not understand (named by number and scheme only)."""
    if not cfg.notify.urls:
        return []
    try:
        import apprise
    except ImportError:
        return ["[notify] urls are set but apprise is not installed (pip install apprise)"]
    _quiet_apprise()
    out = []
    for i, url in enumerate(cfg.notify.urls, 1):
        try:
            ok = apprise.Apprise().add(url)
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            out.append(f"[notify] urls entry {target_label(i, url)} is not understood by apprise; see https://github.com/caronc/apprise/wiki")
    return out
