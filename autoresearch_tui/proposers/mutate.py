"""The offline proposer: tune a script's settings (module-level constants, see `constants`),
one change at a time, in the order a careful person would.

1. The user's orders from the backlog (``LR=3e-4``, ``DEPTH 6``, ``set LR to 3e-4``) first; one
   retry at half the device batch after an experiment ran out of memory.
2. **Continue what just won**: after NAME a -> b was kept, b -> b·b/a (the same step again;
   b + (b − a) across zero).
3. **Nearest moves first, then wider**: every constant's nearest pair (×1.25 and ÷1.25; ±1 for
   a small integer) before anyone's next pair (×1.5, ×2, ×4, ×10 and their inverses); the sign
   where a value may be negative (it is, or its name says BIAS / OFFSET / SHIFT) after ×2. Of a
   pair, the direction that last won for that constant first. At each distance, moves never tried
   before moves tried on older code; learning rates, then sizes, then regularisation first.
4. **Tried** means: tried (or running now, `ctx.in_flight`) since the last keep of *another*
   setting, or a value the constant had at a kept commit since then. A keep elsewhere re-opens a
   constant's values: on the new code they may win. Nothing is repeated on the same code.

Only one constant of an alias pair (``lr = BASE_LR * LR_MULT``) is tuned. Seeds, paths, devices,
logging and evaluation settings are never touched (a seed change is noise, not progress).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..engine.records import RunRecord
from .base import Proposal, ProposalContext, ProposalError, Proposer
from .constants import SKIP_NAME, Constant, aliases, find_constants, fmt, replace_value, value_key

__all__ = ["Constant", "MutateProposer", "candidates", "find_constants", "fmt"]

STRING_FAMILIES = [
    ["relu", "gelu", "silu", "relu2", "tanh"],
    ["adamw", "adam", "sgd", "lion", "muon"],
    ["cosine", "linear", "constant"],
    ["layernorm", "rmsnorm"],
    ["float32", "bfloat16", "float16"],
    ["fp32", "bf16", "fp16"],
]
_ORDER = re.compile(r"^\s*(?:set\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|:|\s+to\s+|\s+)\s*(\S+)\s*$", re.I)
_DESC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) (\S+) -> (\S+)")
_SIGNED = re.compile(r"BIAS|OFFSET|SHIFT", re.I)


def _priority(name: str) -> int:
    n = name.upper()
    if "LR" in n.split("_") or "LEARNING" in n or n.endswith("LR"):
        return 0
    if any(k in n for k in ("BATCH", "WIDTH", "DIM", "EMBD", "EMBED", "DEPTH", "LAYER", "HEAD", "SEQ", "CONTEXT", "BLOCK", "HIDDEN")):
        return 1
    if any(k in n for k in ("WARMUP", "DECAY", "DROPOUT", "CLIP", "BETA", "MOMENTUM")):
        return 2
    return 3


def _distinct(v: Any, tiers: list[list[Any]], signed: bool) -> list[list[Any]]:
    """Tiers without repeats, without the value itself, without values ≤ 0 unless it may be negative."""
    seen = {value_key(v)}
    out = []
    for tier in tiers:
        keep = []
        for x in tier:
            if isinstance(v, int) and not isinstance(v, bool):
                x = int(round(x))
            if (x <= 0 and not signed) or value_key(x) in seen:
                continue
            seen.add(value_key(x))
            keep.append(x)
        if keep:
            out.append(keep)
    return out


def candidates(c: Constant) -> list[list[Any]]:
    """The moves of a constant, nearest first, in tiers of equal distance: [[up, down], …]."""
    v = c.value
    if isinstance(v, bool):
        return [[not v]]
    if isinstance(v, str):
        opts = c.choices or next((fam for fam in STRING_FAMILIES if v.lower() in fam), [])
        return [[o] for o in opts if o != v]
    if not isinstance(v, (int, float)):
        return []
    signed = v < 0 or bool(_SIGNED.search(c.name))
    sign = [[-v]] if signed and v != 0 else []
    if isinstance(v, int):
        if v == 0:
            return _distinct(v, [[1, -1], [2, -2], [4, -4]], signed)
        if abs(v) <= 4:
            return _distinct(v, [[v + 1, v - 1], [v + 2, v - 2], [v * 2], *sign, [v + 3, v - 3]], signed)
        return _distinct(v, [[v * 1.25, v * 0.8], [v * 1.1, v / 1.1], [v * 1.5, v / 1.5], [v * 2, v / 2], *sign, [v * 4, v / 4], [v + 1, v - 1]], signed)
    if v == 0:
        if "DROPOUT" in c.name.upper():
            return [[0.1], [0.05], [0.2]]
        return _distinct(v, [[0.01, -0.01], [0.1, -0.1], [1.0, -1.0]], signed)
    if 0.8 < v < 1:  # betas, momentum, EMA decays: move the distance to 1
        g = 1 - v
        return _distinct(v, [[round(1 - g / 1.25, 6), round(1 - g * 1.25, 6)], [round(1 - g / 2, 6), round(1 - g * 2, 6)],
                             [round(1 - g / 4, 6)]], signed)
    if "DROPOUT" in c.name.upper() and 0 < v < 1:
        return _distinct(v, [[min(0.5, v * 1.5), v / 1.5], [0.0], [min(0.5, v * 2), v / 2]], True)
    return _distinct(v, [[v * 1.25, v * 0.8], [v * 1.1, v / 1.1], [v * 1.5, v / 1.5], [v * 2, v / 2], *sign, [v * 4, v / 4], [v * 10, v / 10]], signed)


FACTORS = (1.25, 1.1, 1.5, 2.0, 4.0, 10.0)


def _continued(old: Any, new: Any) -> Any:
    """One more step the way old -> new went: the same factor (the move's own, not the ratio its
    rounding left: 25 -> 31 was ×1.25, so 31 -> 39), or the same difference across zero."""
    if old * new > 0 and not (isinstance(new, int) and abs(new) <= 4):
        r = new / old
        f = min((x for f in FACTORS for x in (f, 1 / f)), key=lambda x: abs(math.log(r / x)))
        nxt = new * (f if abs(math.log(r / f)) < 0.1 else r)
    else:
        nxt = new + (new - old)
    if isinstance(new, int) and not isinstance(new, bool):
        nxt = int(round(nxt))
        if nxt == new:
            nxt = new + (1 if new > old else -1)
    return nxt


def _parse_literal(s: str, like: Any) -> Any:
    s = s.strip().rstrip(".,;")
    if isinstance(like, bool):
        if s.lower() in ("true", "1", "yes", "on"):
            return True
        if s.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(s)
    if isinstance(like, int):
        f = float(s)
        if f.is_integer():
            return int(f)
        raise ValueError(s)
    if isinstance(like, float):
        return float(s)
    return s.strip("'\"")


class MutateProposer(Proposer):
    name = "mutate"
    pipelined = False

    def _constants(self, ctx: ProposalContext, skip: re.Pattern[str] | None = SKIP_NAME) -> list[Constant]:
        out: list[Constant] = []
        for path, text in ctx.files.items():
            if path.endswith(".py"):
                out.extend(find_constants(path, text, skip))
        return out

    def parse_order(self, idea: str, consts: list[Constant]) -> tuple[Constant, Any] | None:
        m = _ORDER.match(idea)
        if not m:
            return None
        name, raw = m.group(1), m.group(2)
        by_name = {c.name.upper(): c for c in consts}
        c = by_name.get(name.upper())
        if c is None:
            return None
        try:
            return c, _parse_literal(raw, c.value)
        except ValueError:
            return None

    def can_address(self, idea: str, ctx: ProposalContext) -> bool:
        # the user may order any constant (DEVICE_BATCH_SIZE=16); only our own choices skip some
        return self.parse_order(idea, self._constants(ctx, skip=None)) is not None

    idea_format = "NAME=VALUE for a constant of the training script, e.g. LR=0.02 (Enter queues it)"

    def idea_problem(self, idea: str, files: dict[str, str]) -> str | None:
        consts = [c for path, text in files.items() if path.endswith(".py") for c in find_constants(path, text)]
        if self.parse_order(idea, consts) is not None:
            return None
        names = ", ".join(sorted({c.name for c in consts})[:6]) or "none found"
        if _ORDER.match(idea):
            return (f"the offline proposer knows no constant by that name (constants: {names}); "
                    "this idea will be skipped")
        return (f"the offline proposer needs NAME=VALUE (constants: {names}); free text like this will be "
                "skipped: use proposer kind = \"llm\" for it")

    @staticmethod
    def _mutation_of(rec: RunRecord) -> dict[str, Any] | None:
        mut = rec.mutation
        if isinstance(mut, dict) and "name" in mut:
            return mut
        m = _DESC.match(rec.description)
        if m:
            return {"name": m.group(1), "old": m.group(2), "new": m.group(3)}
        return None

    def _state(self, ctx: ProposalContext, consts: list[Constant]) -> tuple[dict[str, set[str]], set[tuple[str, str]], dict[str, int]]:
        """(values tried per constant on the current code, every (name, value) ever tried, the
        direction each constant last won in: +1 up, −1 down)."""
        tried: dict[str, set[str]] = {c.name: {value_key(c.value)} for c in consts}
        ever: set[tuple[str, str]] = set()
        won: dict[str, int] = {}
        for rec in ctx.history:
            mut = self._mutation_of(rec)
            name = mut["name"] if mut else None
            if rec.status == "keep":
                for other, vals in tried.items():  # the code changed elsewhere: its values are open again
                    if other != name:
                        vals.clear()
            if not mut or name not in tried:
                continue
            old, new = _maybe_num(mut["old"]), _maybe_num(mut["new"])
            tried[name].add(value_key(new))
            ever.add((name, value_key(new)))
            if rec.status == "keep":
                tried[name].add(value_key(old))
                ever.add((name, value_key(old)))
                if _is_num(old) and _is_num(new) and old != new:
                    won[name] = 1 if new > old else -1
        for c in consts:
            tried[c.name].add(value_key(c.value))
        for rec in ctx.in_flight:  # running now: as good as tried
            mut = self._mutation_of(rec)
            if mut and mut["name"] in tried:
                tried[mut["name"]].add(value_key(_maybe_num(mut["new"])))
        return tried, ever, won

    def _proposal(self, c: Constant, new: Any, idea: str = "", why: str = "") -> Proposal:
        desc = f"{c.name} {fmt(c.value)} -> {fmt(new)}"
        return Proposal(
            description=desc,
            edits=[replace_value(c, new)],
            hypothesis=why or f"changing {c.name} moves the metric",
            idea=idea,
            mutation={"name": c.name, "old": fmt(c.value), "new": fmt(new), "path": c.path},
        )

    def _oom_retry(self, ctx: ProposalContext, consts: list[Constant]) -> Proposal | None:
        """The crashed idea again (its constant set to the value that did not fit), with the
        per-device batch halved and the accumulation doubled. None when it cannot be built."""
        from .oom import describe, half_batch

        crash = ctx.crash
        mut = self._mutation_of(crash) if crash is not None else None
        if crash is None or not mut:
            return None
        c = next((c for c in consts if c.name == mut["name"]), None)
        if c is None:
            return None
        try:
            new = _parse_literal(str(mut["new"]), c.value)
        except ValueError:
            return None
        if value_key(new) == value_key(c.value):
            return None
        edits, changes = half_batch(ctx.files)
        if not edits or any(e.search == c.line for e in edits):
            return None
        desc = f"{c.name} {fmt(c.value)} -> {fmt(new)} (retry of #{crash.iteration} at half the device batch: {describe(changes)})"
        if desc in ctx.rejected:
            return None
        p = self._proposal(c, new, idea=crash.idea,
                           why=f"#{crash.iteration} ran out of memory; half the device batch with the same effective batch may fit")
        p.description = desc
        p.edits += edits
        p.repair_of = crash.iteration
        p.mutation = {**(p.mutation or {}), "retry_of": crash.iteration,
                      "batch": [{"name": n, "old": fmt(o), "new": fmt(v)} for n, o, v in changes]}
        return p

    async def propose(self, ctx: ProposalContext) -> Proposal:
        consts = self._constants(ctx)
        if not consts:
            raise ProposalError(
                "the mutate proposer found no tunable module-level constants (NAME = number/bool/short string) in "
                + ", ".join(ctx.files),
                exhausted=True,
                retryable=False,
            )
        # 0. one retry of an idea that ran out of memory, at half the device batch
        if ctx.crash is not None and ctx.crash.crash_kind == "oom":
            retry = self._oom_retry(ctx, consts)
            if retry is not None:
                return retry
        # 1. the user's direct orders
        for idea in ctx.ideas[:1]:
            order = self.parse_order(idea, self._constants(ctx, skip=None))
            if order is not None:
                c, new = order
                if value_key(new) != value_key(c.value):
                    return self._proposal(c, new, idea=idea, why="the user asked for it")
        for path, text in ctx.files.items():  # one of two constants that only act as a product
            alias = aliases(text, [c.name for c in consts if c.path == path])
            consts = [c for c in consts if not (c.path == path and c.name in alias)]
        tried, ever, won = self._state(ctx, consts)
        rejected = set(ctx.rejected)
        by_name = {c.name: c for c in consts}

        def fresh(c: Constant, v: Any) -> bool:
            if isinstance(c.value, int) and not isinstance(c.value, bool) and isinstance(v, float):
                return False
            return value_key(v) not in tried[c.name] and f"{c.name} {fmt(c.value)} -> {fmt(v)}" not in rejected

        # 2. one more step in the direction of the last kept change
        last = next((r for r in reversed(ctx.history) if r.status == "keep"), None)
        mut = self._mutation_of(last) if last is not None else None
        if mut and mut["name"] in by_name:
            c = by_name[mut["name"]]
            old, new = _maybe_num(mut["old"]), _maybe_num(mut["new"])
            if _is_num(old) and _is_num(new) and old != new and value_key(new) == value_key(c.value):
                nxt = _continued(old, c.value)
                signed = c.value < 0 or bool(_SIGNED.search(c.name)) or "DROPOUT" in c.name.upper()
                if (nxt > 0 or signed or nxt * c.value > 0) and fresh(c, nxt):
                    return self._proposal(c, nxt, why=f"{c.name} {mut['old']} -> {mut['new']} helped; go further")
        # 3. nearest moves first; at each distance moves never tried before ones tried on older code
        best_key: tuple[int, int, int, int, int] | None = None
        choice: tuple[Constant, Any] | None = None
        for rank, c in enumerate(sorted(consts, key=lambda c: (_priority(c.name), c.path, c.lineno))):
            for t, tier in enumerate(candidates(c)):
                if won.get(c.name, 1) < 0 and _is_num(c.value):
                    tier = sorted(tier, key=lambda x: x > c.value)  # down first: it won last time
                for j, v in enumerate(tier):
                    if not fresh(c, v):
                        continue
                    key = (t, int((c.name, value_key(v)) in ever), rank, j, 0)
                    if best_key is None or key < best_key:
                        best_key, choice = key, (c, v)
        if choice is not None:
            return self._proposal(*choice)
        raise ProposalError("the mutate proposer has tried every nearby value of every constant", exhausted=True, retryable=False)


def _maybe_num(s: Any) -> Any:
    if not isinstance(s, str):
        return s
    if s in ("True", "False"):
        return s == "True"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s.strip("'\"")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
