"""The model's health as the user sees it: the last error, failed rounds in a row, when the model
is asked again (backoff), the share of experiments the fallback proposer ran instead, a request
in trouble now — and, after `NOTICE_AFTER` failed rounds in a row, one notice (once a session)
that says what to fix: the key, the model name, the server address (`Proposer.fix_hint`).

Emits `ModelHealth` (the status bar) and `ModelActivity` (the log, the headless output) for any
proposer but the offline one, whose rounds do not fail the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .context import Ctx, now
from .events import ModelActivity, ModelHealth

NOTICE_AFTER = 3  # failed rounds in a row before the notice that says what to fix
MAX_BACKOFF_S = 300.0


class Health:
    def __init__(self, ctx: Ctx, backoff_base_s: float = 2.0):
        self.ctx = ctx
        self.backoff_base_s = backoff_base_s  # after a failed round: 2, 4, 8 … s, at most 5 minutes
        self.failed_in_row = 0
        self.last_error = ""
        self.last_kind = ""
        self.proposals = 0
        self.fallbacks = 0
        self.retry_at = 0.0
        self.activity = ""
        self.noticed = False
        self._writes: set[asyncio.Future[Any]] = set()

    @property
    def watched(self) -> bool:
        return self.ctx.proposer.name != "mutate"

    @property
    def model(self) -> str:
        return self.ctx.cfg.proposer.model if self.ctx.proposer.name == "llm" else self.ctx.proposer.name

    def emit(self) -> None:
        if self.watched:
            self.ctx.bus.emit(ModelHealth(self.model, self.failed_in_row, self.last_error, self.proposals, self.fallbacks,
                                          self.retry_at if self.in_backoff() else 0.0, self.activity))

    def in_backoff(self) -> bool:
        return now() < self.retry_at

    def succeeded(self) -> None:
        """A model's proposal was accepted."""
        self.failed_in_row, self.retry_at, self.activity = 0, 0.0, ""
        self.proposals += 1
        self.emit()

    def used_fallback(self) -> None:
        self.proposals += 1
        self.fallbacks += 1
        self.activity = ""
        self.emit()

    def failed(self, reason: str, kind: str, quiet: bool = False) -> float:
        """A failed round: counted, the model rests (returns the backoff in seconds), and after
        `NOTICE_AFTER` in a row the one notice of the session says what to fix (`quiet`: not now,
        the session ends on it and says so itself)."""
        self.failed_in_row += 1
        self.last_error, self.last_kind, self.activity = reason, kind, ""
        backoff = min(MAX_BACKOFF_S, self.backoff_base_s * (2 ** min(self.failed_in_row - 1, 8)))
        self.retry_at = now() + backoff
        if self.failed_in_row >= NOTICE_AFTER and not self.noticed and not quiet:
            self.noticed = True
            meanwhile = ("; meanwhile the offline proposer runs the experiments" if self.ctx.fallback is not None
                         else "")
            self.ctx.notice(f"the {self.ctx.proposer.name} proposer failed {self.failed_in_row} rounds in a row (last: "
                            f"{reason[:200]}){meanwhile}. {self.hint(kind, reason)}", "warning")
        self.emit()
        return backoff

    def hint(self, kind: str, reason: str) -> str:
        try:
            return self.ctx.proposer.fix_hint(kind, reason)
        except Exception:  # noqa: BLE001 - a proposer's bug must not hide the failure
            return "check the proposer's settings"

    def report(self, text: str, kind: str = "model_retry") -> None:
        """A request in trouble (a failed attempt that is retried; a prepared request that failed):
        the log, the headless output and the status bar say so at once, and runs.jsonl keeps it."""
        self.activity = text if kind == "model_retry" else ""
        self.ctx.bus.emit(ModelActivity(text, "warning"))
        self.emit()
        fut = asyncio.ensure_future(self.ctx.thread(self.ctx.results.append_event, {"kind": kind, "text": text, "at": now()}))
        self._writes.add(fut)
        fut.add_done_callback(lambda f: (self._writes.discard(f), f.cancelled() or f.exception()))

    def resting(self) -> str:
        """Why the model is not asked now (it rests after failed rounds)."""
        left = max(0.0, self.retry_at - now())
        rounds = f"{self.failed_in_row} failed round{'s' if self.failed_in_row != 1 else ''} in a row"
        return f"the model rests after {rounds} (last: {self.last_error[:160]}); asked again in {left:.0f} s"
