"""Putting a session together: the configured proposer and executor (local, or Slurm) around the engine,
and the notifications (apprise) as one more subscriber.

Lives outside `engine/` because choosing the proposer may mean the LLM proposer (litellm), which
the engine never imports.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .engine.session import Session
from .proposers import make_fallback, make_proposer
from .proposers.base import Proposer


def make_executor(cfg: Config) -> Any:
    if cfg.compute.executor == "slurm":
        from .engine.executors.slurm import SlurmExecutor

        return SlurmExecutor(cfg)
    from .engine.executors import LocalExecutor

    return LocalExecutor()


def new_session(cfg: Config, proposer: Proposer | None = None, max_iterations: int | None = None,
                platform: dict[str, Any] | None = None, poll_s: float = 0.05) -> Session:
    """A session with its proposer and executor, and the notifier of `[notify]` subscribed (the
    TUI and headless both start here)."""
    from .notify import attach

    session = Session(cfg, proposer or make_proposer(cfg), max_iterations=max_iterations, platform=platform, poll_s=poll_s,
                      executor=make_executor(cfg), fallback=make_fallback(cfg))
    session.notifier = attach(session, cfg)  # type: ignore[attr-defined]
    return session
