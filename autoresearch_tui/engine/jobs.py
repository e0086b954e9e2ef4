"""What a slot runs: a job (a proposal, the baseline, a re-measurement, a re-application), a
sweep's shared state, and the best an experiment started from (what it must beat)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .gate import Ready
from .records import RunRecord


@dataclass
class Job:
    """What a slot runs next: a proposal, the baseline (a repeat: `repeat` > 1), a re-measurement
    after an override, or an experiment re-applied onto a best that moved while it ran."""

    kind: str  # proposal | baseline | remeasure | reapply
    ready: Ready | None = None
    repeat: int = 0
    remeasure_of: int | None = None
    reapply: RunRecord | None = None  # the record the re-applied experiment starts from (commit made)
    basis: Basis | None = None  # the best when it started (set by prepare)
    sweep: Sweep | None = None  # one value of a sweep: decided with the others


@dataclass
class Sweep:
    """`sweep NAME v1 v2 …`: one experiment per value over free slots, decided as one step when
    the last one is measured — the best value is kept only if it wins, the others are discarded."""

    idea: str
    size: int
    measured: list[tuple[RunRecord, Basis | None]] = field(default_factory=list)
    decided: bool = False

    def drop(self) -> None:
        """A value that will not run (a stop came before it started)."""
        self.size -= 1

    @property
    def complete(self) -> bool:
        return len(self.measured) >= self.size


@dataclass
class Basis:
    """What an experiment must beat: the best (and its reference) when it started."""

    commit: str
    best: float | None
    reference: float | None
    n_reference: int
