"""Typed engine events: plain dataclasses, the only thing subscribers (TUI, headless, tests) see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .records import RunRecord


class Phase:
    STARTING = "starting"
    BASELINE = "baseline"
    PROPOSING = "proposing"
    COMMITTING = "committing"
    RUNNING = "running"
    MEASURING = "measuring"
    KEPT = "kept"
    DISCARDED = "discarded"
    CRASHED = "crashed"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class Event:
    pass


@dataclass
class SessionStarted(Event):
    branch: str
    tag: str
    start_branch: str
    resumed: bool
    metric: str
    direction: str
    max_iterations: int
    time_budget_s: float
    platform: dict[str, Any] = field(default_factory=dict)
    proposer: str = "mutate"
    slots: list[list[str]] = field(default_factory=list)  # each slot's GPUs (one entry per slot)


@dataclass
class PlatformDetected(Event):
    """Platform detection runs beside the first run; this comes when it is done."""

    platform: dict[str, Any]


@dataclass
class PhaseChanged(Event):
    phase: str
    iteration: int
    detail: str = ""
    paused: bool = False
    stopping: bool = False
    slot: int = 0


@dataclass
class SlotView:
    """One slot as the UI shows it."""

    index: int
    gpus: list[str]
    state: str  # idle | proposing | committing | running | baseline | measuring | …
    iteration: int
    description: str
    started_at: float  # of the run in flight (0 = none)
    budget_s: float
    timeout_s: float
    log_path: str


@dataclass
class SlotsChanged(Event):
    """The slots (several experiments at once): one line each."""

    slots: list[SlotView]


@dataclass
class CurveUpdated(Event):
    """A running experiment's curve grew (loss against the share of the budget), with the
    curves it is compared with."""

    iteration: int
    slot: int
    points: list[tuple[float, float]]
    best: list[tuple[float, float]]
    baseline: list[tuple[float, float]]
    best_iteration: int | None = None
    note: str = ""  # e.g. "no curve in the log yet", or the early-stop reason


@dataclass
class HistoryLoaded(Event):
    """Every record already on disk (resume, or the baseline just recorded)."""

    records: list[RunRecord]
    best: RunRecord | None
    baseline: RunRecord | None


@dataclass
class ProposalReady(Event):
    iteration: int
    description: str
    hypothesis: str = ""
    idea: str = ""
    fallback: str = ""  # from the fallback proposer: why the model's proposal was not used


@dataclass
class ProposalRejected(Event):
    iteration: int
    reason: str
    attempt: int


@dataclass
class ProposalFailed(Event):
    iteration: int
    reason: str


@dataclass
class ModelActivity(Event):
    """A model request in trouble: a failed attempt that is retried (the log says why nothing
    happens meanwhile)."""

    text: str
    level: str = "info"


@dataclass
class ModelHealth(Event):
    """How the model is doing (the status bar): the last error, failed rounds in a row, and how
    many experiments this session the fallback proposer ran instead."""

    model: str
    failed_in_row: int = 0
    last_error: str = ""
    proposals: int = 0  # experiments proposed this session (by the model or the fallback)
    fallbacks: int = 0
    retry_at: float = 0.0  # the model is asked again from then (0: now)
    activity: str = ""  # a request in trouble now ("" when none)


@dataclass
class RunStarted(Event):
    iteration: int
    commit: str
    description: str
    log_path: str
    time_budget_s: float
    timeout_s: float
    started_at: float
    pid: int = 0
    slot: int = 0


@dataclass
class RunFinished(Event):
    iteration: int
    exit_code: int | None
    timed_out: bool
    killed: bool
    duration_s: float
    slot: int = 0


@dataclass
class Decision(Event):
    """A row was recorded (keep / discard / crash); `best` is the History's best after it."""

    record: RunRecord
    best: RunRecord | None
    baseline: RunRecord | None
    session_done: int = 0  # experiments run in this session


@dataclass
class OverrideApplied(Event):
    iteration: int
    status: str
    new_head: str
    record: RunRecord


@dataclass
class BacklogChanged(Event):
    ideas: list[dict[str, Any]]


@dataclass
class CostUpdated(Event):
    total_usd: float
    total_tokens: int
    last_usd: float = 0.0
    last_tokens: int = 0


@dataclass
class ProgressReport(Event):
    iteration: int
    text: str


@dataclass
class Notice(Event):
    level: str  # "info" | "warning" | "error"
    text: str


@dataclass
class SessionEnded(Event):
    reason: str
    summary_path: str = ""
    summary: str = ""
