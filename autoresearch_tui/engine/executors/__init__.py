"""Executors run one experiment's command somewhere and report on it; they decide nothing.

`base.Executor` is the protocol (start, wait, kill, re-attach from saved state, score a run
that ended while the app was away, log path). `local.LocalExecutor` runs on this machine.
"""

from .base import Executor, RunSpec
from .local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "RunSpec"]
