"""The settings of a script, read with `ast`: module-level constants and how they may be written.

* A candidate is ``NAME = <number | bool | short string>`` (or ``NAME: T = …``) on one line at
  module level, bound nowhere else at module scope — a name that a loop counts up (``step = 0``
  … ``step += 1``), a later assignment, a ``for`` target or a function's ``global`` rebinds is
  no setting.
* `aliases`: two constants that only ever act through their product or quotient
  (``lr = BASE_LR * LR_MULT``) are one setting: changing either scales the same thing.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .base import Edit

SKIP_NAME = re.compile(r"SEED|EVAL|BUDGET|LOG|PRINT|VERBOSE|DEVICE|PATH|DIR|FILE|WORKERS|DEBUG|VERSION|URL|NAME", re.I)
_CHOICES_COMMENT = re.compile(r"#.*?(?:one of|choices?|options?)\s*[:=]?\s*(.+)$", re.I)


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


class _Bindings(ast.NodeVisitor):
    """How many times each name is bound at module scope (functions' `global` names included)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self._scope: list[set[str] | None] = [None]  # None: module scope; a set: a function's globals

    def _bind(self, name: str) -> None:
        g = self._scope[-1]
        if g is None or name in g:
            self.count[name] += 1

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            self._bind(node.name)
        g = {n for s in ast.walk(node) if isinstance(s, ast.Global) for n in s.names}
        self._scope.append(g)
        for s in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(s)
        self._scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._bind(node.name)
        self._scope.append(set())
        for s in node.body:
            self.visit(s)
        self._scope.pop()

    def _comprehension(self, node: ast.AST) -> None:  # its loop names are its own
        self._scope.append(set())
        self.generic_visit(node)
        self._scope.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._bind(node.id)


def find_constants(path: str, text: str, skip: re.Pattern[str] | None = SKIP_NAME) -> list[Constant]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    binds = _Bindings()
    binds.visit(tree)
    lines = text.splitlines()
    out: list[Constant] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            continue
        if (skip is not None and skip.search(target)) or node.lineno != node.end_lineno or binds.count[target] != 1:
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


def _factors(node: ast.AST) -> set[str]:
    """The names multiplied or divided together in a product."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
        return _factors(node.left) | _factors(node.right)
    return {node.id} if isinstance(node, ast.Name) else set()


def aliases(text: str, names: list[str]) -> dict[str, str]:
    """{name: the earlier name it is an alias of} for constants that are only ever used together
    in the same products (`names` in file order)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    parent: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    together: dict[str, list[set[str]]] = {n: [] for n in names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in together:
            top: ast.AST = node
            while isinstance(parent.get(top), ast.BinOp) and isinstance(parent[top].op, (ast.Mult, ast.Div)):  # type: ignore[attr-defined]
                top = parent[top]
            together[node.id].append(_factors(top) - {node.id})
    out: dict[str, str] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if b in out or a in out or not together[a] or not together[b]:
                continue
            if all(b in f for f in together[a]) and all(a in f for f in together[b]):
                out[b] = a
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


def value_key(v: Any) -> str:
    """A value as `fmt` writes it (3 significant digits): two values with one key are one value."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return repr(float(f"{float(v):.3g}"))
    return str(v)


def replace_value(c: Constant, new: Any) -> Edit:
    text = fmt(new)
    idx = c.line.find(c.seg, c.line.find(c.name) + len(c.name))
    if idx < 0:
        raise ValueError(c.line)
    new_line = c.line[:idx] + text + c.line[idx + len(c.seg):]
    return Edit(c.path, c.line, new_line)
