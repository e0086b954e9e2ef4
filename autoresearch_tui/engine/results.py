"""`results.tsv` (upstream's five columns) and `.autoresearch/runs.jsonl` (the full records).

Write order per row: runs.jsonl first, then results.tsv, each one fsynced append. On load a
partial last line (the app died mid-write) is cut off and reported, and rows that runs.jsonl has
but results.tsv lacks are written back, so that no row is ever lost. Both files are read by
column name / key, never by position.
"""

from __future__ import annotations

import json
import os
import threading

try:  # 3-5x faster parsing of a long runs.jsonl (100k rows: 0.3 s instead of 0.75 s here)
    import orjson as _fastjson

    _loads = _fastjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; stay correct without it
    _loads = json.loads
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text, clean_text, fsync_append
from .paths import paths_for
from .records import STATUSES

FIXED_COLUMNS = ("commit", "memory_gb", "status", "description")


def clean_description(text: str, limit: int = 300) -> str:
    out = " ".join(clean_text(str(text).replace("\t", " ").replace("\n", " ")).split())
    return out[:limit]


def tsv_row(rec: dict[str, Any]) -> str:
    status = rec["status"]
    metric = rec.get("metric")
    value = 0.0 if status == "crash" or metric is None else float(metric)
    mem = rec.get("memory_gb")
    mem = 0.0 if status == "crash" and mem is None else (mem or 0.0)
    short = (rec.get("commit") or "0000000")[:7]
    return f"{short}\t{value:.6f}\t{float(mem):.1f}\t{status}\t{clean_description(rec.get('description', ''))}\n"


def _cut_partial_line(path: Path) -> str | None:
    """If the file does not end with a newline, cut the last line off; return what was cut."""
    try:
        with open(path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            # find the last newline
            pos = size - 1
            chunk = 65536
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                buf = f.read(pos - start)
                i = buf.rfind(b"\n")
                if i >= 0:
                    cut_at = start + i + 1
                    break
                pos = start
            else:
                cut_at = 0
            f.seek(cut_at)
            cut = f.read()
            f.truncate(cut_at)
            f.flush()
            os.fsync(f.fileno())
            return cut.decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


@dataclass
class LoadedResults:
    records: list[dict[str, Any]] = field(default_factory=list)  # kind == "run", overrides folded in
    events: list[dict[str, Any]] = field(default_factory=list)  # every other jsonl line (overrides, failures)
    warnings: list[str] = field(default_factory=list)


class ResultsStore:
    def __init__(self, root: Path, results_file: str, metric_name: str):
        self.root = Path(root)
        self.tsv = self.root / results_file
        paths = paths_for(self.root)
        self.state_dir = paths.state_dir
        self.jsonl = paths.jsonl
        self.metric_name = metric_name
        # what the files were when the app last wrote them (inode, size, mtime, ctime: no user can
        # set a ctime back), so that a change behind the app's back is seen: None = not known yet
        self._sig: dict[Path, tuple[int, ...] | None] = {}
        self._io = threading.Lock()

    @staticmethod
    def _stat(path: Path) -> tuple[int, ...] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def remember(self) -> None:
        """The files are as the app left them (after setup and after each write)."""
        self._sig = {p: self._stat(p) for p in (self.jsonl, self.tsv)}

    def verify(self, history: Any) -> list[str]:
        """What changed in the files since the app last wrote them; both are then written back
        from the records in memory (`history`: records.History), so that nothing is lost."""
        with self._io:
            if not self._sig:
                return []
            changed = [p for p in (self.jsonl, self.tsv) if self._stat(p) != self._sig.get(p)]
            if not changed:
                return []
            problems = [f"{p.relative_to(self.root) if p.is_relative_to(self.root) else p} was "
                        f"{'deleted' if not p.exists() else 'changed'}" for p in changed]
            lines = [json.dumps({"kind": "run", **r.to_dict()}, sort_keys=True, default=str) + "\n" for r in history.records]
            lines += [json.dumps(e, sort_keys=True, default=str) + "\n" for e in history.events]
            self.state_dir.mkdir(parents=True, exist_ok=True)
            for path in (self.jsonl, self.tsv):  # a link or a folder put in a file's place goes aside
                if path.is_symlink() or path.is_dir():
                    path.rename(path.with_name(f"{path.name}.moved-{os.getpid()}-{len(lines)}"))
            atomic_write_text(self.jsonl, "".join(lines))
            atomic_write_text(self.tsv, self.header + "".join(tsv_row(r.to_dict()) for r in sorted(history.records, key=lambda r: r.iteration)))
            self.remember()
            return problems

    @property
    def header(self) -> str:
        return f"commit\t{self.metric_name}\tmemory_gb\tstatus\tdescription\n"

    # ----------------------------------------------------------------- writing
    def ensure_files(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.tsv.exists() or self.tsv.stat().st_size == 0:
            fsync_append(self.tsv, self.header)

    def append(self, rec: dict[str, Any]) -> None:
        """One experiment row: the full record, then the TSV row."""
        assert rec.get("status") in STATUSES, rec.get("status")
        with self._io:
            self.ensure_files()
            rec = {"kind": "run", **rec}
            fsync_append(self.jsonl, json.dumps(rec, sort_keys=True, default=str) + "\n")
            fsync_append(self.tsv, tsv_row(rec))
            if self._sig:
                self.remember()

    def append_event(self, rec: dict[str, Any]) -> None:
        """A non-row record (override, failed proposal) in runs.jsonl only."""
        with self._io:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fsync_append(self.jsonl, json.dumps(rec, sort_keys=True, default=str) + "\n")
            if self._sig:
                self.remember()

    def rewrite_tsv(self, records: list[dict[str, Any]]) -> None:
        """Atomically rewrite results.tsv from the records (after a keep/discard override)."""
        with self._io:
            atomic_write_text(self.tsv, self.header + "".join(tsv_row(r) for r in records))
            if self._sig:
                self.remember()

    # ----------------------------------------------------------------- reading
    def count_tsv_rows(self) -> int:
        """Complete data rows (the header and blank lines excluded), without parsing them."""
        try:
            data = self.tsv.read_bytes()
        except FileNotFoundError:
            return 0
        lines = data.split(b"\n")
        return max(0, sum(1 for ln in lines[1:] if ln.strip()))

    def read_tsv_rows(self) -> list[dict[str, str]]:
        try:
            text = self.tsv.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        if not lines or not lines[0].strip():
            return []
        cols = lines[0].rstrip("\r").split("\t")
        rows = []
        for ln in lines[1:]:
            if not ln.strip():
                continue
            vals = ln.rstrip("\r").split("\t")
            rows.append(dict(zip(cols, vals, strict=False)))  # a short or long row keeps what it has
        return rows

    def load(self, repair: bool = True) -> LoadedResults:
        out = LoadedResults()
        if repair:
            for path in (self.jsonl, self.tsv):
                cut = _cut_partial_line(path)
                if cut is not None:
                    out.warnings.append(
                        f"{path.relative_to(self.root)}: dropped a partial last line ({len(cut)} bytes) left by an interrupted write"
                    )
        runs: list[dict[str, Any]] = []
        try:
            with open(self.jsonl, "rb") as f:
                raw_lines = f.read().split(b"\n")
        except FileNotFoundError:
            raw_lines = []
        for n, line in enumerate(raw_lines, 1):
            if not line.strip():
                continue
            try:
                rec = _loads(line)
            except ValueError:
                out.warnings.append(f".autoresearch/runs.jsonl: line {n} is not valid JSON; skipped")
                continue
            if not isinstance(rec, dict):
                continue
            if rec.get("kind", "run") == "run":
                runs.append(rec)
            else:
                out.events.append(rec)
        # fold overrides in
        by_iter = {r.get("iteration"): r for r in runs}
        for ev in out.events:
            if ev.get("kind") == "override" and ev.get("iteration") in by_iter:
                r = by_iter[ev["iteration"]]
                r["status"] = ev["status"]
                r["override"] = ev
        runs = self._check_numbers(runs, out.warnings)
        runs = self._reconcile_tsv(runs, out.warnings, repair)
        out.records = runs
        return out

    def _check_numbers(self, runs: list[dict[str, Any]], warnings: list[str]) -> list[dict[str, Any]]:
        """Records in iteration order; gaps and repeated numbers in runs.jsonl are reported (the
        file was truncated or edited), never silently renumbered."""
        nums = [r.get("iteration") for r in runs if isinstance(r.get("iteration"), int)]
        if len(nums) != len(runs):
            return runs  # an old file without numbers: by position (History numbers them)
        seen, dup = set(), set()
        for n in nums:
            (dup if n in seen else seen).add(n)
        if dup:
            warnings.append(f".autoresearch/runs.jsonl: iteration(s) {', '.join(map(str, sorted(dup)))} recorded more than once "
                            "(the file was edited or damaged); check it")
        missing = sorted(set(range(max(nums) + 1)) - seen) if nums else []
        if missing:
            warnings.append(f".autoresearch/runs.jsonl: the records of iteration(s) {_ranges(missing)} are missing "
                            "(the file was truncated or damaged); rows only results.tsv still has are adopted")
        return runs  # in the order they were recorded (with several slots, not the numbers' order)

    def _reconcile_tsv(self, runs: list[dict[str, Any]], warnings: list[str], repair: bool) -> list[dict[str, Any]]:
        """results.tsv must be exactly the records' rows, in iteration order. Rows it lacks are
        written back; rows only it has (runs.jsonl lost them) are adopted as records; then the file
        is rebuilt from the records by iteration, never by position."""
        expected = Counter(tsv_row(r) for r in runs)
        try:
            lines = self.tsv.read_text(encoding="utf-8", errors="replace").split("\n")
        except FileNotFoundError:
            lines = []
        body = [ln + "\n" for ln in lines[1:] if ln.strip()]
        extra: list[str] = []
        for ln in body:
            if expected[ln] > 0:
                expected[ln] -= 1
            else:
                extra.append(ln)
        lacking = sum(expected.values())
        had_records = bool(runs)
        if extra:
            cols = lines[0].rstrip("\r").split("\t") if lines else []
            taken = {r.get("iteration") for r in runs}
            free = (n for n in range(10**9) if n not in taken)
            if had_records:
                warnings.append(f"{self.tsv.name}: {len(extra)} row(s) that .autoresearch/runs.jsonl lacks were adopted "
                                "(runs.jsonl was truncated or damaged; their details are lost)")
            for ln in extra:
                rec = self._record_from_tsv(0, dict(zip(cols, ln.rstrip("\n").rstrip("\r").split("\t"), strict=False)))
                if had_records:  # after the records' numbers, in the file's order (a gap is filled first)
                    rec["iteration"] = next(free)
                else:  # a file from before this tool (no records at all): its rows in order
                    rec["iteration"] = len([r for r in runs if r.get("source") == "results.tsv"])
                runs.append(rec)
        if repair and (lacking or (extra and had_records)):
            rows = "".join(tsv_row(r) for r in sorted(runs, key=lambda r: r["iteration"]))
            head = lines[0] + "\n" if lines and lines[0].strip() else self.header
            atomic_write_text(self.tsv, head + rows)
            if lacking:
                warnings.append(f"{self.tsv.name}: restored {lacking} row(s) from .autoresearch/runs.jsonl (rebuilt by iteration)")
        return runs

    def _record_from_tsv(self, i: int, row: dict[str, str]) -> dict[str, Any]:
        metric_col = self.metric_name if self.metric_name in row else next(
            (c for c in row if c not in FIXED_COLUMNS), None
        )
        def num(v: str | None) -> float | None:
            try:
                return float(v) if v is not None else None
            except ValueError:
                return None
        status = row.get("status", "discard")
        return {
            "kind": "run",
            "iteration": i,
            "commit": row.get("commit", ""),
            "metric": None if status == "crash" else num(row.get(metric_col) if metric_col else None),
            "memory_gb": num(row.get("memory_gb")),
            "status": status if status in STATUSES else "discard",
            "description": row.get("description", ""),
            "source": "results.tsv",
        }


def _ranges(nums: list[int]) -> str:
    """[2, 3, 4, 7] -> '2–4, 7'."""
    out: list[str] = []
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)
