"""The offline proposer: tune module-level constants found with `ast`, one change at a time.

* Finds ``NAME = <number | bool | short string>`` at module level in the in-scope Python files.
* Never repeats a tried (name, value); the values a constant had at kept commits count as tried.
* After a kept win on NAME (a -> b) it first pushes further the same way (b -> b*b/a).
* Otherwise goes round-robin over the constants (learning rates and sizes first), trying each
  one's nearest move before anyone's second move.
* Backlog lines it can read (``LR=3e-4``, ``DEPTH 6``, ``set LR to 3e-4``) are direct orders.
Seeds, paths, devices and evaluation settings are never touched (a seed change is noise, not
progress).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from ..engine.records import RunRecord
from .base import Edit, Proposal, ProposalContext, ProposalError, Proposer

SKIP_NAME = re.compile(r"SEED|EVAL|BUDGET|LOG|PRINT|VERBOSE|DEVICE|PATH|DIR|FILE|WORKERS|DEBUG|VERSION|URL|NAME", re.I)
STRING_FAMILIES = [
    ["relu", "gelu", "silu", "relu2", "tanh"],
    ["adamw", "adam", "sgd", "lion", "muon"],
    ["cosine", "linear", "constant"],
    ["layernorm", "rmsnorm"],
    ["float32", "bfloat16", "float16"],
    ["fp32", "bf16", "fp16"],
]
_CHOICES_COMMENT = re.compile(r"#.*?(?:one of|choices?|options?)\s*[:=]?\s*(.+)$", re.I)
_ORDER = re.compile(r"^\s*(?:set\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|:|\s+to\s+|\s+)\s*(\S+)\s*$", re.I)
_DESC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) (\S+) -> (\S+)")


@dataclass
class Constant:
    path: str
    name: str
    value: Any
    line: str  # the full source line (used as the SEARCH text)
    lineno: int
    seg: str  # the value's source text
    choices: list[str] | None = None


def _const_value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        v = node.operand.value
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    raise ValueError


def find_constants(path: str, text: str, skip: re.Pattern[str] | None = SKIP_NAME) -> list[Constant]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    lines = text.splitlines()
    out: list[Constant] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            continue
        if (skip is not None and skip.search(target)) or node.lineno != node.end_lineno:
            continue
        try:
            v = _const_value(value)
        except ValueError:
            continue
        if isinstance(v, str) and (len(v) > 24 or not v or " " in v):
            continue
        line = lines[node.lineno - 1]
        seg = ast.get_source_segment(text, value) or repr(v)
        choices = None
        m = _CHOICES_COMMENT.search(line)
        if m:
            choices = [c.strip().strip("'\"") for c in re.split(r"[,|/]", m.group(1)) if c.strip()]
        out.append(Constant(path, target, v, line, node.lineno, seg, choices))
    return out


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0:
            return "0.0"
        r = float(f"{v:.3g}")
        s = repr(r)
        if "e" in s:
            s = f"{r:.2e}".replace("e-0", "e-").replace("e+0", "e")
        return s
    return repr(v)


def _key(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return repr(float(f"{float(v):.3g}"))  # the precision fmt() writes
    return str(v)


def _priority(name: str) -> int:
    n = name.upper()
    if "LR" in n.split("_") or "LEARNING" in n or n.endswith("LR"):
        return 0
    if any(k in n for k in ("BATCH", "WIDTH", "DIM", "EMBD", "EMBED", "DEPTH", "LAYER", "HEAD", "SEQ", "CONTEXT", "BLOCK", "HIDDEN")):
        return 1
    if any(k in n for k in ("WARMUP", "DECAY", "DROPOUT", "CLIP", "BETA", "MOMENTUM")):
        return 2
    return 3


def candidates(c: Constant) -> list[Any]:
    v = c.value
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, str):
        opts = c.choices or next((fam for fam in STRING_FAMILIES if v.lower() in fam), [])
        return [o for o in opts if o != v]
    if isinstance(v, int):
        if v == 0:
            return [1, 2, 4]
        if abs(v) <= 4:
            return [x for x in (v + 1, v - 1, v * 2, v + 2, v + 3) if x > 0 or v < 0]
        moves = [v * 2, v // 2, v * 1.5, v / 1.5, v * 4, v // 4, v * 1.25, v * 0.75, v + 1, v - 1]
        out: list[Any] = []
        for x in moves:
            x = max(1, int(round(x)))
            if x != v and x not in out:
                out.append(x)
        return out
    if isinstance(v, float):
        if v == 0:
            return [0.1, 0.01, 0.05]
        if 0.8 < v < 1:  # betas, momentum, EMA decays: move the distance to 1
            gap = 1 - v
            return [round(1 - gap / 2, 6), round(1 - gap * 2, 6), round(1 - gap / 4, 6), round(1 - gap * 1.5, 6)]
        if "DROPOUT" in c.name.upper() and 0 < v < 1:
            return [0.0, v / 2, min(0.5, v * 2), min(0.5, v * 1.5)]
        # nearest moves first; wider ones once every constant had its near moves
        return [v * 2, v / 2, v * 1.5, v / 1.5, v * 4, v / 4, v * 1.25, v * 0.8, v * 3, v / 3, v * 10, v / 10]
    return []


def _replace_value(c: Constant, new: Any) -> Edit:
    text = fmt(new)
    idx = c.line.find(c.seg, c.line.find(c.name) + len(c.name))
    if idx < 0:
        raise ValueError(c.line)
    new_line = c.line[:idx] + text + c.line[idx + len(c.seg) :]
    return Edit(c.path, c.line, new_line)


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

    def _tried(self, ctx: ProposalContext, consts: list[Constant]) -> set[tuple[str, str]]:
        tried = {(c.name, _key(c.value)) for c in consts}
        for rec in [*ctx.history, *ctx.in_flight]:
            mut = self._mutation_of(rec)
            if not mut:
                continue
            tried.add((mut["name"], _key(_maybe_num(mut["new"]))))
            if rec.status == "keep":
                tried.add((mut["name"], _key(_maybe_num(mut["old"]))))
        return tried

    def _proposal(self, c: Constant, new: Any, idea: str = "", why: str = "") -> Proposal:
        desc = f"{c.name} {fmt(c.value)} -> {fmt(new)}"
        return Proposal(
            description=desc,
            edits=[_replace_value(c, new)],
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
        if _key(new) == _key(c.value):
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
                if _key(new) != _key(c.value):
                    return self._proposal(c, new, idea=idea, why="the user asked for it")
        tried = self._tried(ctx, consts)
        rejected = set(ctx.rejected)
        by_name = {c.name: c for c in consts}

        def fresh(c: Constant, v: Any) -> bool:
            if isinstance(c.value, int) and not isinstance(c.value, bool) and isinstance(v, float):
                return False
            return (c.name, _key(v)) not in tried and f"{c.name} {fmt(c.value)} -> {fmt(v)}" not in rejected

        # 2. push further in the direction of the last kept win
        for rec in reversed(ctx.history):
            if rec.status != "keep":
                continue
            mut = self._mutation_of(rec)
            if not mut or mut["name"] not in by_name:
                break
            c = by_name[mut["name"]]
            old, new = _maybe_num(mut["old"]), _maybe_num(mut["new"])
            if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(new, bool) and old not in (0, 0.0):
                nxt = new * (new / old)
                nxt = int(round(nxt)) if isinstance(c.value, int) else nxt
                if nxt != c.value and fresh(c, nxt) and (not isinstance(nxt, int) or nxt > 0):
                    return self._proposal(c, nxt, why=f"{c.name} {mut['old']} -> {mut['new']} helped; go further")
            break
        # 3. round robin over constants, nearest moves first
        ordered = sorted(consts, key=lambda c: (_priority(c.name), c.path, c.lineno))
        cands = {c.name: candidates(c) for c in ordered}
        depth = max((len(v) for v in cands.values()), default=0)
        for r in range(depth):
            for c in ordered:
                opts = cands[c.name]
                if r < len(opts) and fresh(c, opts[r]):
                    return self._proposal(c, opts[r])
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
