"""`RunRecord`: one row of the experiment records, typed — what ran (commit, description, how it
was proposed), what it measured, and what was decided. It reads and writes the same keys
`.autoresearch/runs.jsonl` has always had (unknown keys are kept in `extra` and written back),
so old sessions load unchanged. (`records.History` answers everything about a set of them.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("keep", "discard", "crash")


@dataclass
class RunRecord:
    iteration: int
    status: str = ""  # keep | discard | crash ("" while the experiment is in flight)
    description: str = ""
    commit: str = ""
    ref: str = ""
    parent: str = ""
    # how it came about
    proposer: str = ""
    hypothesis: str = ""
    idea: str = ""
    mutation: dict[str, Any] | None = None
    diff_hash: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    lines_added: int = 0
    lines_removed: int = 0
    repair_of: int | None = None
    fallback: str = ""  # the offline proposer ran this because the model failed: why
    attempts: int = 0  # model answers it took (repair rounds + 1); 0: not a model's proposal
    transcripts: list[str] = field(default_factory=list)  # .autoresearch/proposals/… of those answers
    reapply_of: int | None = None  # the experiment whose change this re-applies onto a best that moved
    slot: int = 0
    is_baseline: bool = False
    remeasure_of: int | None = None
    # what it measured
    metric: float | None = None
    metric_name: str = ""
    runs: list[float] = field(default_factory=list)  # every measurement when confirmed
    best_runs: list[float] = field(default_factory=list)  # re-measurements of the best (best_commit) while deciding
    best_commit: str = ""
    secondary: dict[str, Any] = field(default_factory=dict)
    memory_gb: float | None = None
    memory_source: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    killed: bool = False
    duration_s: float | None = None
    survivors: int = 0
    crash_reason: str = ""
    crash_kind: str = ""
    no_retry: str = ""  # out of memory: why this crash is not retried at half the device batch
    curve: str = ""  # .autoresearch/curves/<n>.json: its loss against the position in the run
    early_stop: str = ""  # why it was stopped early (then: discard)
    error_tail: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    log: str = ""
    platform: str = ""
    # what was decided
    best_before: float | None = None
    delta_vs_best: float | None = None
    delta_vs_baseline: float | None = None
    verdict: str = ""
    confidence: float | None = None
    margin: float | None = None
    noise: float | None = None
    policy: str = ""
    flag: str = ""
    guard: str = ""
    discard_reason: str = ""
    override: dict[str, Any] | None = None  # the user's keep/discard of this row
    source: str = ""  # "results.tsv": adopted from a file written elsewhere
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------- meaning
    @property
    def is_remeasure(self) -> bool:
        return self.remeasure_of is not None

    @property
    def is_experiment(self) -> bool:
        """A proposed change (not the baseline, not a re-measurement after an override)."""
        return not self.is_baseline and self.remeasure_of is None

    @property
    def kept_by_user(self) -> bool:
        return bool(self.override) and self.status == "keep"

    @property
    def sets_best(self) -> bool:
        """Its measurement is of the code the branch then stood on."""
        return self.status == "keep" and self.metric is not None and not self.kept_by_user

    @property
    def gain(self) -> float | None:
        """metric − best before it (negative is better when minimizing)."""
        if self.metric is None or self.best_before is None:
            return None
        return self.metric - self.best_before

    # --------------------------------------------------------------- (de)serialise
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        """From a runs.jsonl line: known keys typed (a null becomes the field's empty value),
        unknown keys kept in `extra`."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in d.items():
            if k == "kind":
                continue
            (known if k in _FIELDS else extra)[k] = v
        for k, v in list(known.items()):
            kind = _FIELDS[k]
            try:
                if kind == "str":
                    known[k] = "" if v is None else str(v)
                elif kind == "int":
                    known[k] = int(v or 0)
                elif kind == "float":
                    known[k] = float(v or 0.0)
                elif kind == "bool":
                    known[k] = bool(v)
                elif kind == "list":
                    known[k] = list(v or [])
                elif kind == "dict":
                    known[k] = dict(v or {})
            except (TypeError, ValueError):
                extra[k] = known.pop(k)  # not what the field holds: kept as read, out of the way
        known.setdefault("iteration", 0)  # (History.from_dicts gives such a row its place)
        rec = cls(**known)
        rec.extra = extra
        return rec

    def to_dict(self) -> dict[str, Any]:
        """The runs.jsonl form: every field that says something (numbers and flags, zero or not),
        `metric` always, plus the unknown keys read."""
        out: dict[str, Any] = {"kind": "run"}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name != "metric" and (v is None or v == "" or v == [] or v == {}):
                continue
            out[f.name] = v
        out.update(self.extra)
        return out

    def update(self, **changes: Any) -> None:
        for k, v in changes.items():
            if k in _FIELDS:
                setattr(self, k, v)
            else:
                self.extra[k] = v


def _kind(annotation: str) -> str:
    """The kind of value a field holds, from its annotation ("" where None is a value of its own)."""
    if "None" in annotation:
        return ""
    return next((k for k in ("bool", "int", "float", "str", "list", "dict") if annotation.startswith(k)), "")


_FIELDS = {f.name: _kind(str(f.type)) for f in dataclasses.fields(RunRecord) if f.name != "extra"}
