"""Headless mode: the same engine, one plain line per event on stdout."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TextIO

from .engine import events as ev
from .engine.session import Session
from .eventtext import format_event
from .fsio import clean_text


def _ts() -> str:
    return time.strftime("%H:%M:%S")


class HeadlessPrinter:
    def __init__(self, engine: Session, out: TextIO | None = None):
        self.engine = engine
        self.out = out or sys.stdout
        self._last_phase = ""

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.PhaseChanged) and e.phase == self._last_phase:
            return
        if isinstance(e, ev.PhaseChanged):
            self._last_phase = e.phase
        line = format_event(e, self.engine.metric_name)
        if line is None:
            return
        line = clean_text(line)  # what a run or a model wrote never drives the terminal
        for i, part in enumerate(line.splitlines() or [""]):
            self.out.write((f"[{_ts()}] " if i == 0 and not part.startswith("===") else "") + part + "\n")
        if isinstance(e, ev.SessionEnded) and e.summary:
            from .summary import completion_text

            self.out.write(completion_text(self.engine.history) + "\n")
        self.out.flush()


async def _run(engine: Session) -> str:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal() -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            sys.stderr.write("\nstopping: killing the current run (Ctrl-C again to quit at once)\n")
            engine.stop_now()
        else:
            for t in asyncio.all_tasks(loop):
                t.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: a hang-up stays ignored, as the user asked
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):
            pass
    return await engine.run()


def run_headless(engine: Session) -> str:
    engine.subscribe(HeadlessPrinter(engine))
    return asyncio.run(_run(engine))
