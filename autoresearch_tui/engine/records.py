"""The experiment records, typed, and the one place that answers "what is the best?".

`RunRecord` is one row: what ran (commit, description, how it was proposed), what it measured,
and what was decided. It reads and writes the same keys `.autoresearch/runs.jsonl` has always
had (unknown keys are kept in `extra` and written back), so old sessions load unchanged.

`History` is every record of a session plus the user's overrides. It alone defines:

* **baseline** — the first baseline run with a metric (the unmodified code);
* **best** — the measurement of the commit the research branch stands on, i.e. the reference a
  new experiment must beat. The loop moves it only by a keep; the user moves it with `k` / `d`:
  the branch is re-applied or reverted and *re-measured*, and that re-measurement is the best
  from then on, even when it is worse (the user chose to build on it). The overridden row
  itself was measured on another base, so it is never the best;
* **measurements** of a commit — every run of that code: the baseline's repeats, an experiment's
  runs (its confirmations), and the re-measurements of the best made while deciding later
  experiments (`best_runs`, of `best_commit`);
* **noise** — the pooled standard deviation of every repeated measurement (see `policy`), with
  its degrees of freedom;
* **reference** — the mean of every measurement of the best commit (and of the baseline's);
* **running best** — the best after each row, the line every chart draws;
* **counts** and **improvements** — for the status bar, the summary, the notes and the plots.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .policy import pooled_spread
from .runrecord import STATUSES, RunRecord

__all__ = ["STATUSES", "History", "RunRecord"]

def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


class History:
    """Every record of the session in order, and the overrides; see the module's docstring."""

    def __init__(self, records: Iterable[RunRecord] = (), events: Iterable[dict[str, Any]] = (), direction: str = "minimize"):
        self.records: list[RunRecord] = list(records)
        self.events: list[dict[str, Any]] = list(events)
        self.direction = direction
        self._next = max((r.iteration for r in self.records), default=-1) + 1

    @classmethod
    def from_dicts(cls, records: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]] = (), direction: str = "minimize") -> "History":
        out = []
        for pos, d in enumerate(records):
            rec = RunRecord.from_dict(d)
            if not isinstance(d.get("iteration"), int):  # a row without a usable number: its place
                rec.iteration = pos
            out.append(rec)
        return cls(out, events, direction)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.records)

    # ------------------------------------------------------------- changes
    def add(self, rec: RunRecord) -> None:
        self.records.append(rec)
        self._next = max(self._next, rec.iteration + 1)

    def reserve(self, n: int) -> None:
        """Numbers below `n` are taken (an experiment ref names them) even if no record does."""
        self._next = max(self._next, n)

    def add_event(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)

    def get(self, iteration: int) -> RunRecord | None:
        return next((r for r in self.records if r.iteration == iteration), None)

    @property
    def next_iteration(self) -> int:
        return self._next

    # -------------------------------------------------------------- answers
    def baseline(self) -> RunRecord | None:
        first = next((r for r in self.records if r.is_baseline and r.metric is not None), None)
        return first or next((r for r in self.records if r.sets_best), None)

    def best(self) -> RunRecord | None:
        return next((r for r in reversed(self.records) if r.sets_best), None)

    def running_best(self) -> list[float | None]:
        """The best after each record (aligned with `records`)."""
        out: list[float | None] = []
        cur: float | None = None
        for r in self.records:
            if r.sets_best:
                cur = r.metric
            out.append(cur)
        return out

    def best_ever(self) -> RunRecord | None:
        """The single best measurement the loop ever kept (may differ from `best` after a user's `k`/`d`)."""
        cands = [r for r in self.records if r.sets_best]
        if not cands:
            return None
        out = cands[0]
        for r in cands[1:]:
            if _better(r.metric, out.metric, self.direction):  # type: ignore[arg-type]
                out = r
        return out

    def _measured(self) -> dict[str, list[float]]:
        """Every measurement, by the commit whose code it measured (a record without one: alone)."""
        groups: dict[str, list[float]] = {}
        for r in self.records:
            if r.metric is not None and not r.crash_reason:
                groups.setdefault(r.commit or f"#{r.iteration}", []).extend(r.runs or [r.metric])
            if r.best_runs:
                groups.setdefault(r.best_commit, []).extend(r.best_runs)
        return groups

    def measurements(self, commit: str) -> list[float]:
        """Every measurement of this commit's code (see the module's docstring)."""
        return list(self._measured().get(commit, [])) if commit else []

    def noise_estimate(self, candidate: list[float] | None = None, best_extra: list[float] | None = None) -> tuple[float, int]:
        """(spread, degrees of freedom): the pooled standard deviation of every repeated
        measurement, with a candidate's runs and new runs of the best not recorded yet."""
        groups = self._measured()
        if best_extra:
            best = self.best()
            groups.setdefault(best.commit if best else "", []).extend(best_extra)
        return pooled_spread([*groups.values(), candidate or []])

    def noise(self) -> float:
        return self.noise_estimate()[0]

    def baseline_runs_done(self) -> int:
        return sum(1 for r in self.records if r.is_baseline and r.metric is not None)

    def reference(self) -> tuple[float | None, int]:
        """The mean of every measurement of the best commit, and how many there were."""
        return self._mean_of(self.best())

    def baseline_reference(self) -> tuple[float | None, int]:
        """The mean of every measurement of the baseline's code, and how many there were."""
        return self._mean_of(self.baseline())

    def _mean_of(self, rec: RunRecord | None) -> tuple[float | None, int]:
        if rec is None:
            return None, 0
        vals = self.measurements(rec.commit) if rec.commit else []
        return (sum(vals) / len(vals), len(vals)) if vals else (rec.metric, 1)

    def experiments(self) -> list[RunRecord]:
        return [r for r in self.records if r.is_experiment]

    def counts(self) -> dict[str, int]:
        runs = self.experiments()
        return {s: sum(1 for r in runs if r.status == s) for s in STATUSES}

    def improvements(self) -> list[RunRecord]:
        """Experiments the loop kept because they beat the best before them, biggest gain first."""
        sign = 1 if self.direction == "minimize" else -1
        out = [r for r in self.experiments() if r.sets_best and r.gain is not None and sign * r.gain < 0]
        return sorted(out, key=lambda r: sign * r.gain)  # type: ignore[operator]

    def kept_by_user(self) -> list[RunRecord]:
        return [r for r in self.records if r.kept_by_user]

    def improvement(self) -> float | None:
        """best − baseline (metric units), each the mean of its measurements."""
        base, best = self.baseline_reference()[0], self.reference()[0]
        if base is None or best is None:
            return None
        return best - base

    def beats_baseline(self) -> bool:
        """Whether the best's mean is better than the baseline's (what a summary may call a gain)."""
        d = self.improvement()
        return d is not None and (d < 0 if self.direction == "minimize" else d > 0)

    def find_diff(self, diff_hash: str) -> RunRecord | None:
        return next((r for r in self.records if r.diff_hash and r.diff_hash == diff_hash), None)

    def pending_remeasure(self) -> dict[str, Any] | None:
        """The user's last override, if its re-measurement has not been recorded yet."""
        ov = [e for e in self.events if e.get("kind") == "override"]
        if not ov:
            return None
        last = ov[-1]
        of = last.get("iteration")
        after = last.get("before_iteration")
        if isinstance(after, int):  # by order: immune to a clock that steps back
            done = any(r.remeasure_of == of and r.iteration >= after for r in reversed(self.records))
        else:  # an override written by an older version: by time
            at = float(last.get("at") or 0)
            done = any(r.remeasure_of == of and float(r.ended_at or 0) >= at for r in reversed(self.records))
        return None if done else {"commit": last.get("new_head", ""), "of": of}

    def last_failed_streak(self) -> int:
        """Experiments in a row, most recent first, that did not improve the best."""
        n = 0
        for r in reversed(self.experiments()):
            if r.status == "keep":
                break
            n += 1
        return n
