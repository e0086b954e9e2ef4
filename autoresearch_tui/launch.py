"""Putting a session together: the configured proposer and the local executor around the engine.

Lives outside `engine/` because choosing the proposer may mean the LLM proposer (litellm), which
the engine never imports.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .engine.session import Session
from .proposers import make_fallback, make_proposer
from .proposers.base import Proposer


def new_session(cfg: Config, proposer: Proposer | None = None, max_iterations: int | None = None,
                platform: dict[str, Any] | None = None, poll_s: float = 0.05) -> Session:
    return Session(cfg, proposer or make_proposer(cfg), max_iterations=max_iterations, platform=platform, poll_s=poll_s,
                   fallback=make_fallback(cfg))
