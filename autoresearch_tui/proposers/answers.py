"""Reading a model's answer: a description, a hypothesis and edits, in any accepted form.

The prompt asks for SEARCH/REPLACE blocks; small and local models often answer otherwise. The
forms accepted, tried in this order (the first one found in the answer wins):

1. **SEARCH/REPLACE** blocks;
2. a **unified diff** (in a ```diff fence or bare): each hunk becomes one edit whose SEARCH is
   its context and removed lines and whose REPLACE is its context and added lines (the line
   numbers of `@@` headers are ignored: the text must match);
3. a **whole file** in a fenced block, for a file in scope (named on a line just before the
   block, or the only file in scope) that looks like that file (at least half its length and
   mostly the same lines, no "rest unchanged" elisions): it becomes one edit from the current
   text to the new one;
4. **`NAME = value` lines** for module-level constants of the in-scope Python files (a name
   assigned once at module level, to a literal or arithmetic of literals): the constant's line
   with the new value, its comment kept.

Nothing here decides that an edit is acceptable: every edit is validated like any other
(`edits.apply_edits`: scope, read-only files, exact application, parse; the gate: duplicates).
"""

from __future__ import annotations

import ast
import difflib
import re

from .base import Edit

_FENCE = re.compile(r"^\s*```[\w+.-]*\s*$")
_FENCED = re.compile(r"^[ \t]*```[\w+.-]*[ \t]*\n(?P<body>.*?)\n?[ \t]*```[ \t]*$", re.M | re.S)
_BLOCK = re.compile(
    r"<{5,9} ?SEARCH[^\n]*\n(?P<search>.*?)\n?={5,9}[^\n]*\n(?P<replace>.*?)\n?>{5,9} ?REPLACE",
    re.DOTALL,
)
_HUNK = re.compile(r"^@@.*$", re.M)
_DIFF_HEADER = re.compile(r"^\+\+\+ (?:[ab]/)?(\S+)")
_DIFFISH = ("---", "+++", "@@", "diff --git", "index ")
_ELISION = re.compile(r"^\s*(?:#|//)?\s*(?:\.\.\.|…)|rest of (?:the )?(?:file|code)|(?:remains?|stays?) (?:the same|unchanged)|\bunchanged\b",
                      re.I)
_ASSIGN = re.compile(r"^[-*•>\s]*(?:\d+[.)]\s*)?`*\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?!=)(.+?)\s*`*\s*$")


def _clean_path(line: str) -> str:
    s = line.strip().strip("`*#").strip()
    s = re.sub(r"^(file|path|filename)\s*[:=]\s*", "", s, flags=re.I).strip().strip("`*\"'").strip()
    return s.rstrip(":")


def _as_path(line: str) -> str:
    """The file a line names on its own ("train.py", "File: `train.py`"), or ""."""
    cand = _clean_path(line)
    return cand if cand and " " not in cand and ("." in cand or "/" in cand) else ""


def _path_before(text: str, pos: int, scope: list[str]) -> str:
    """The file named on one of the few lines before `pos` (else the only file in scope, or "")."""
    before = text[:pos].rstrip("\n").split("\n")
    for line in reversed(before[-4:]):
        if not line.strip() or _FENCE.match(line):
            continue
        if _as_path(line):
            return _as_path(line)
        break
    return scope[0] if len(scope) == 1 else ""


# ------------------------------------------------------------- the forms
def _search_replace(text: str, scope: list[str]) -> list[Edit]:
    return [Edit(_path_before(text, b.start(), scope), b.group("search"), b.group("replace")) for b in _BLOCK.finditer(text)]


def _unified_diff(text: str, scope: list[str]) -> list[Edit]:
    if not _HUNK.search(text):
        return []
    edits: list[Edit] = []
    path = ""
    search: list[str] | None = None
    replace: list[str] = []

    def close() -> None:
        nonlocal search, replace
        if search is not None:
            while search and replace and not search[-1].strip() and not replace[-1].strip():
                search.pop()
                replace.pop()
            edits.append(Edit(path or (scope[0] if len(scope) == 1 else ""), "\n".join(search), "\n".join(replace)))
        search, replace = None, []

    lines = text.split("\n")
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("--- ") and nxt.startswith("+++ "):
            close()  # a file header: "--- a/train.py" then "+++ b/train.py"
            continue
        if line.startswith("+++ ") and i and lines[i - 1].startswith("--- "):
            m = _DIFF_HEADER.match(line)
            path = "" if not m or m.group(1) == "/dev/null" else m.group(1)
            continue
        if line.startswith("@@"):
            close()
            search, replace = [], []
            continue
        if search is None:
            continue
        if _FENCE.match(line) or line.startswith("diff --git"):
            close()
        elif line.startswith("\\"):
            continue  # "\ No newline at end of file"
        elif line.startswith("-"):
            search.append(line[1:])
        elif line.startswith("+"):
            replace.append(line[1:])
        elif line.startswith(" ") or not line:
            search.append(line[1:])
            replace.append(line[1:])
        else:
            close()  # prose after the hunk
    close()
    return edits


def _whole_file(text: str, scope: list[str], files: dict[str, str]) -> list[Edit]:
    edits: list[Edit] = []
    for m in _FENCED.finditer(text):
        body = m.group("body")
        path = _path_before(text, m.start(), scope)
        cur = files.get(path)
        if cur is None or path in {e.path for e in edits}:
            continue
        old, new = cur.splitlines(), body.splitlines()
        if len(new) < max(3, len(old) // 2):
            continue  # a snippet, not the file
        if difflib.SequenceMatcher(None, old, new, autojunk=False).ratio() < 0.5:
            continue
        if any(_ELISION.search(ln) for ln in set(new) - set(old)):
            continue  # "# ... rest of the file unchanged": not the whole file
        if path.endswith(".py"):
            try:
                ast.parse(body)
            except SyntaxError:
                continue
        if cur.endswith("\n") and not body.endswith("\n"):
            body += "\n"
        edits.append(Edit(path, cur, body))
    return edits


def module_constants(files: dict[str, str], scope: list[str]) -> dict[str, tuple[str, str, ast.expr]]:
    """NAME -> (path, its source line, the value's node) for names assigned exactly once, on one
    line, at module level of the in-scope Python files."""
    seen: dict[str, int] = {}
    out: dict[str, tuple[str, str, ast.expr]] = {}
    for path in scope:
        text = files.get(path)
        if text is None or not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines()
        for node in tree.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets, value = [node.target], node.value
            for t in targets:
                for name in ast.walk(t):
                    if isinstance(name, ast.Name):
                        seen[name.id] = seen.get(name.id, 0) + 1
            if (isinstance(node, (ast.Assign, ast.AnnAssign)) and len(targets) == 1 and isinstance(targets[0], ast.Name)
                    and value is not None and node.lineno == node.end_lineno and _literal(value)):
                out[targets[0].id] = (path, lines[node.lineno - 1], value)
    return {k: v for k, v in out.items() if seen.get(k) == 1}


def _literal(node: ast.expr) -> bool:
    """A constant's value: literals, and arithmetic or tuples/lists of them (`3e-4`, `2 ** 10`)."""
    return all(isinstance(n, (ast.Constant, ast.UnaryOp, ast.BinOp, ast.Tuple, ast.List, ast.operator, ast.unaryop, ast.Load))
               for n in ast.walk(node))


def _assignments(text: str, scope: list[str], files: dict[str, str]) -> tuple[list[Edit], list[str]]:
    """Edits for `NAME = value` lines naming module-level constants (the last value of each name
    wins), and their descriptions ("LR 0.01 -> 0.02")."""
    consts = module_constants(files, scope)
    if not consts:
        return [], []
    wanted: dict[str, str] = {}
    for line in text.split("\n"):
        m = _ASSIGN.match(line)
        if not m or m.group(1) not in consts:
            continue
        value = m.group(2).strip().rstrip(";").strip()
        value = re.sub(r"\s+#.*$", "", value)
        try:
            ast.parse(value, mode="eval")
        except SyntaxError:
            continue
        wanted[m.group(1)] = value
    edits, descs = [], []
    for name, value in wanted.items():
        path, line, node = consts[name]
        raw = line.encode()  # ast offsets count UTF-8 bytes
        a, b = node.col_offset, node.end_col_offset or len(raw)
        old = raw[a:b].decode(errors="replace")
        if ast.dump(ast.parse(value, mode="eval").body) == ast.dump(node):
            continue  # the value it already has
        new_line = (raw[:a] + value.encode() + raw[b:]).decode(errors="replace")
        edits.append(Edit(path, line, new_line))
        descs.append(f"{name} {old} -> {value}")
    return edits, descs


# ------------------------------------------------------------- the answer
def _first_prose_line(text: str, diff: bool) -> str:
    """The first line of prose: not in a fence, not a marker, not a diff's line."""
    fenced = False
    for ln in text.splitlines():
        s = ln.strip()
        if _FENCE.match(ln):
            fenced = not fenced
            continue
        if fenced or not s or s.startswith(_DIFFISH) or re.match(r"^[<=>]{5}", s) or (diff and ln.startswith(("+", "-", " "))):
            continue
        if _as_path(s):
            continue  # a file name before a block
        return s.strip("*#").strip()
    return ""


def parse_answer(text: str, scope: list[str], files: dict[str, str] | None = None) -> tuple[str, str, list[Edit]]:
    """(description, hypothesis, edits) from a model's answer; tolerant of fences and spacing.
    `files` (the in-scope files now) enables the whole-file and `NAME = value` forms."""
    text = text.replace("\r\n", "\n")
    desc = hyp = ""
    m = re.search(r"^\W*DESCRIPTION\W*[:\-]\s*(.+)$", text, re.M | re.I)
    if m:
        desc = m.group(1).strip().strip("*").strip()
    m = re.search(r"^\W*HYPOTHESIS\W*[:\-]\s*(.+)$", text, re.M | re.I)
    if m:
        hyp = m.group(1).strip().strip("*").strip()
    edits = _search_replace(text, scope)
    diff = not edits
    edits = edits or _unified_diff(text, scope)
    diff = diff and bool(edits)
    derived: list[str] = []
    if not edits and files:
        edits = _whole_file(text, scope, files)
        if not edits:
            edits, derived = _assignments(text, scope, files)
    if not desc and edits:
        desc = ", ".join(derived) if derived else _first_prose_line(text, diff)[:120]
    return desc[:200], hyp[:300], edits
