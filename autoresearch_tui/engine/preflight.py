"""Preflight (`autoresearch-tui check`): is this repository ready for a session?"""

from __future__ import annotations

import ast
import difflib
import fcntl
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from .ledger import Ledger, TOOL_IGNORES
from .paths import paths_for


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def program_of(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for w in words:
        if "=" in w and not w.startswith(("/", ".")) and w.split("=", 1)[0].isidentifier():
            continue  # FOO=bar prefix
        if w in ("env", "exec", "nice", "time", "nohup"):
            continue
        return w
    return None


_OPERATORS = {";", "&", "&&", "|", "||", "(", ")", ";;", "|&"}
_REDIRECT = re.compile(r"^\d*(<|>|>>|<<|<&|>&|&>|<>|<<<)$")
_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "in", "!", "{", "}",
             "function", "select", "time"}
_WRAPPERS = {"env", "exec", "nice", "time", "nohup", "command", "stdbuf", "ionice"}
SHELL_BUILTINS = {"cd", "true", "false", "exit", "echo", "test", "[", ":", "export", "set", "unset", "source", ".", "printf",
                  "read", "wait", "trap", "ulimit", "umask", "eval", "exec", "shift", "return", "local", "break", "continue"}


def shell_programs(command: str) -> list[str] | None:
    """The program of each simple command of a shell command line (`env > x; python train.py`
    → ['env', 'python']); None when it does not parse. Assignments, redirections, shell keywords
    and wrappers such as `env` or `nice` (when a program follows them) are skipped."""
    try:
        lex = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lex.whitespace_split = True
        words = list(lex)
    except ValueError:
        return None
    out: list[str] = []
    expect = True
    wrapper = ""
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w in _OPERATORS or w == "\n":
            if wrapper:
                out.append(wrapper)
            expect, wrapper = True, ""
            continue
        if not expect:
            if _REDIRECT.match(w):
                i += 1
            continue
        if _REDIRECT.match(w):
            i += 1  # the redirection's target
            continue
        if w in _KEYWORDS or ("=" in w and w.split("=", 1)[0].isidentifier()):
            continue
        if w in _WRAPPERS and not wrapper:
            wrapper = w
            continue
        if wrapper and (w.startswith("-") or w.isdigit()):
            continue  # the wrapper's options (nice -n 5)
        out.append(w)
        expect, wrapper = False, ""
    if wrapper:
        out.append(wrapper)
    return out


def script_of(command: str, prog: str) -> str | None:
    """The script an interpreter is given (`python train.py` → train.py), if the command names one."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    rest = words[words.index(prog) + 1:] if prog in words else []
    for w in rest:
        if w == "-m" or w == "-c":
            return None  # a module or inline code: no file to check
        if w.startswith("-"):
            continue
        return w if w.endswith((".py", ".sh")) else None
    return None


_PRINT_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_/.-]*")


def metric_warning(cfg: Config) -> str | None:
    """A warning when the metric's name is printed by none of the in-scope and read-only
    files (a typo such as val_los for val_loss crashes the baseline), with the nearest name."""
    name = cfg.metric.name
    printed: list[str] = []
    for f in [*cfg.research.files_in_scope, *cfg.research.read_only]:
        try:
            text = (cfg.root / f).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        printed.extend(ln for ln in text.splitlines() if "print(" in ln or "write(" in ln or "log(" in ln)
    if not printed or any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", ln) for ln in printed):
        return None
    words = {w for ln in printed for w in _PRINT_WORDS.findall(ln)}
    near = difflib.get_close_matches(name, sorted(words), 1, 0.7)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return (f"{cfg.path.name}: [metric] name '{name}' appears in no print statement of the in-scope or read-only "
            f"files{hint}; the baseline will crash if the log never shows it")


def find_program(prog: str, root: Path) -> bool:
    if "/" in prog:
        p = Path(prog) if os.path.isabs(prog) else root / prog
        return p.is_file() and os.access(p, os.X_OK)
    return shutil.which(prog) is not None or prog in SHELL_BUILTINS


def _tool_file(path: str, cfg: Config) -> bool:
    names = {p.strip("/") for p in TOOL_IGNORES} | {cfg.research.results_file, cfg.path.name, cfg.path.name + ".tmp"}
    first = path.split("/", 1)[0]
    return path in names or first + "/" in {p.lstrip("/") for p in TOOL_IGNORES if p.endswith("/")}


def repository_problem(root: Path) -> str | None:
    """The one-line reason `root` cannot hold a session (asked before the wizard writes anything)."""
    top = Ledger.toplevel(root)
    if top is None:
        return f"{root}: not inside a git repository; run 'git init' and commit your files, then start again"
    if top.resolve() != root.resolve():
        return f"{root}: not the repository's top folder ({top}); start autoresearch-tui there"
    led = Ledger(root, "")
    if not led.has_commits():
        return f"{root}: the repository has no commits yet; commit your training files first (git add -A && git commit)"
    return None


def preflight(cfg: Config, for_session: bool = False) -> Report:
    rep = Report()
    r = cfg.research
    root = cfg.root
    top = Ledger.toplevel(root)
    if top is None:
        rep.errors.append(f"{root}: not inside a git repository; run 'git init' and commit your files, then start again")
        return rep
    if top.resolve() != root.resolve():
        rep.errors.append(
            f"{cfg.path}: the configuration must sit in the repository's top folder ({top}); move it there"
        )
        return rep
    led = Ledger(root, cfg.tag)
    if not led.has_commits():
        rep.errors.append(f"{root}: the repository has no commits yet; commit your training files first (git add -A && git commit)")
        return rep
    branch = led.current_branch()
    if branch is None:
        rep.errors.append(f"{root}: HEAD is detached; check out a branch first (e.g. git switch main)")
        return rep
    dirty = [c for c in led.tracked_changes() if not _tool_file(c.path, cfg)]
    if dirty:
        names = ", ".join(c.path for c in dirty[:5]) + (" …" if len(dirty) > 5 else "")
        if branch == cfg.branch:
            rep.warnings.append(f"uncommitted changes on {branch} ({names}) will be reset to the best commit")
        else:
            rep.errors.append(f"{root}: uncommitted changes in {names}; commit or stash them first (the tool only commits experiments)")
    for key in ("files_in_scope", "read_only"):
        for f in getattr(r, key):
            p = root / f
            if p.is_symlink():
                rep.errors.append(f"{cfg.path.name}: [research] {key} entry '{f}' is a symbolic link; name the real file")
            elif not p.exists():
                rep.errors.append(f"{cfg.path.name}: [research] {key} entry '{f}' does not exist in {root}; fix the path or create and commit the file")
            elif not p.is_file():
                rep.errors.append(f"{cfg.path.name}: [research] {key} entry '{f}' is not a file; name files, not folders")
            elif not led.is_tracked(f):
                rep.errors.append(f"{cfg.path.name}: [research] {key} entry '{f}' is not committed; git add and commit it first")
            elif key == "files_in_scope" and f.endswith(".py"):
                try:
                    ast.parse(p.read_text(encoding="utf-8", errors="replace"))
                except SyntaxError as e:
                    rep.warnings.append(f"{f} does not parse (line {e.lineno}: {e.msg}); the baseline will crash")
    progs = shell_programs(r.command) or []
    prog = next((p for p in progs if p not in SHELL_BUILTINS), progs[0] if progs else None)
    missing = [p for p in progs if not find_program(p, root)]
    if prog is None:
        rep.errors.append(f"{cfg.path.name}: [research] command has no program to run; set it, e.g. \"python train.py\"")
    elif missing:
        rep.errors.append(f"{cfg.path.name}: [research] command: program '{missing[0]}' was not found on PATH; install it or fix the command")
    else:
        script = script_of(r.command, prog)
        if script and not (root / script).is_file():
            near = difflib.get_close_matches(script, [str(p.relative_to(root)) for p in root.glob("*") if p.is_file()], 1)
            rep.errors.append(f"{cfg.path.name}: [research] command: script '{script}' does not exist in {root}; fix the command"
                              + (f" (did you mean '{near[0]}'?)" if near else ""))
    warn = metric_warning(cfg)
    if warn:
        rep.warnings.append(warn)
    if r.guard_command:
        gp = shell_programs(r.guard_command) or []
        g = next((p for p in gp if not find_program(p, root)), None if gp else "")
        if g is not None:
            rep.errors.append(f"{cfg.path.name}: [research] guard_command: program '{g}' was not found on PATH; fix it or leave guard_command empty")
    if r.program and r.program != "program.md" and not (root / r.program).exists():
        rep.warnings.append(f"{cfg.path.name}: [research] program '{r.program}' does not exist; the LLM gets no research strategy")
    from .gpus import SlotPlanError, plan_slots

    if cfg.compute.executor == "slurm":
        from .executors.slurm import check as slurm_check

        why = slurm_check(cfg)
        if why:
            rep.errors.append(why)
        else:
            rep.info.append(f"Slurm: up to {cfg.compute.slots} jobs in flight"
                            + (f" on partition {cfg.compute.partition}" if cfg.compute.partition else " on the default partition"))

    try:
        plan = plan_slots(cfg)
        if plan.count > 1:
            gpus = "; ".join(f"slot {i}: GPU {','.join(g)}" for i, g in enumerate(plan.gpus) if g)
            rep.info.append(f"{plan.count} experiments at once, each in its own worktree" + (f" ({gpus})" if gpus else f" ({plan.note})"))
    except SlotPlanError as e:
        rep.errors.append(str(e))
    if cfg.proposer.kind == "llm":
        from ..proposers.keys import key_status

        warn = key_status(cfg)
        if warn:
            rep.warnings.append(warn)
    if led.branch_exists():
        tsv = root / r.results_file
        rows = 0
        if tsv.exists():
            rows = max(0, sum(1 for ln in tsv.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()) - 1)
        rep.info.append(f"resume: branch {cfg.branch} exists ({rows} experiment rows in {r.results_file}); no new baseline")
    else:
        rep.info.append(f"new session: branch {cfg.branch} will be created from {branch}; the baseline runs first")
    from . import sandbox

    box = sandbox.decide(r.sandbox, cfg.path.name)
    if box.error:
        rep.errors.append(box.error)
    elif box.note:
        rep.warnings.append(box.note)
    else:
        rep.info.append(f"runs are sandboxed with {box.binary} (network {'on' if r.network else 'off'})")
    tsv = r.results_file
    if led.is_tracked(tsv):
        rep.errors.append(f"{cfg.path.name}: [research] results_file '{tsv}' is tracked by git; name an untracked file "
                          "(the tool writes it every run), or git rm --cached it")
    for f in r.files_in_scope:
        try:
            (root / f).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            rep.errors.append(f"{cfg.path.name}: [research] files_in_scope entry '{f}' is not UTF-8 text (byte {e.start}); "
                              "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8) and commit it")
        except OSError:
            pass
    if not for_session:
        gd = led.git("rev-parse", "--git-common-dir", check=False).strip()
        if gd:
            dfd = os.open(root / gd, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(dfd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(dfd, fcntl.LOCK_UN)
            except OSError:
                rep.errors.append(f"{paths_for(root).lock}: another autoresearch-tui is running in this repository; stop it first")
            finally:
                os.close(dfd)
        lock = paths_for(root).lock
        if lock.exists() and not rep.errors[-1:] == [f"{lock}: another autoresearch-tui is running in this repository; stop it first"]:
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                rep.errors.append(f"{lock}: another autoresearch-tui is running in this repository; stop it first")
            finally:
                os.close(fd)
    return rep
