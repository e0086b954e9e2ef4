"""The proposer interface shared by the offline `mutate` proposer and the `llm` proposer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.records import RunRecord


@dataclass
class Edit:
    path: str
    search: str
    replace: str


@dataclass
class Proposal:
    description: str
    edits: list[Edit]
    hypothesis: str = ""
    idea: str = ""  # the backlog idea this proposal addresses ("" = none)
    mutation: dict[str, Any] | None = None  # mutate: {"name", "old", "new"}
    tokens: int = 0
    cost_usd: float = 0.0
    repair_of: int | None = None  # iteration whose crash this tries to fix
    lines_changed: tuple[int, int] = (0, 0)  # (added, removed), set when validated


@dataclass
class ProposalContext:
    iteration: int
    root: Path
    files: dict[str, str]  # in-scope files at the best commit
    read_only: dict[str, str]
    goal: str
    metric: str
    direction: str
    program: str = ""
    history: list[RunRecord] = field(default_factory=list)
    best: RunRecord | None = None  # the History's best: the measurement of the commit the branch stands on
    baseline: RunRecord | None = None
    ideas: list[str] = field(default_factory=list)  # queued user ideas, first in line
    feedback: list[str] = field(default_factory=list)  # why earlier answers this iteration were rejected
    rejected: list[str] = field(default_factory=list)  # descriptions of those rejected answers
    platform: dict[str, Any] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)  # platform advice
    crash: RunRecord | None = None  # a crash to repair (same idea)
    strategy_note: str = ""
    temperature: float = 0.7
    in_flight: list[RunRecord] = field(default_factory=list)  # experiments running now: count as tried


class ProposalError(Exception):
    """The proposer could not produce a proposal (provider down, nothing left to try)."""

    def __init__(self, message: str, exhausted: bool = False, retryable: bool = True):
        super().__init__(message)
        self.exhausted = exhausted
        self.retryable = retryable


class Proposer:
    name = "base"
    #: prepare the next proposal while an experiment runs (worth it for slow proposers)
    pipelined = False

    async def propose(self, ctx: ProposalContext) -> Proposal:  # pragma: no cover - interface
        raise NotImplementedError

    def can_address(self, idea: str, ctx: ProposalContext) -> bool:
        return True

    #: what the idea input shows as its placeholder: the form of idea this proposer acts on
    idea_format = "an idea for the next iteration, in your words (Enter queues it)"

    def idea_problem(self, idea: str, files: dict[str, str]) -> str | None:
        """Said when the idea is queued: why this proposer will not act on it, or None."""
        return None

    @property
    def total_cost(self) -> float:
        return 0.0

    @property
    def total_tokens(self) -> int:
        return 0

    async def aclose(self) -> None:
        return None
