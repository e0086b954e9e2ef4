"""The git ledger: the research branch, experiment commits, their refs, keep and revert.

Uses the git command line (one short-lived process per operation, no long-lived repository
objects). Model text never becomes a git argument: messages go through stdin (`-F -`).
Never runs `git clean`; `reset --hard` touches tracked files only, so the ignored results
survive. Only the research branch is ever moved.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import secrets
from ..fsio import clean_text

#: the tool's own files, kept out of git through .git/info/exclude
TOOL_IGNORES = ["/.autoresearch/", "/run.log", "/autoresearch.md", "/autoresearch-summary.md", "/progress.png"]


#: every git command of the app: repository hooks and the fsmonitor hook never run (a run could
#: have installed them), whatever the repository's configuration says
GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false",
       "-c", "diff.external=", "-c", "core.sshCommand=false")


class GitError(Exception):
    pass


@dataclass
class Change:
    path: str
    status: str  # porcelain XY


class Ledger:
    def __init__(self, root: Path, tag: str):
        self.root = Path(root)
        self.tag = tag
        self.branch = f"autoresearch/{tag}"
        # never the user's secrets in git's environment (a hook or filter a run planted gets none)
        self._env = secrets.scrub(os.environ)
        self._env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"})
        for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            self._env.pop(k, None)
        self._identity_checked = False
        self._git_dir: Path | None = None
        #: tracked files with the user's uncommitted edits (the configuration) that a reset must not undo
        self.keep_files: dict[str, bytes] = {}

    # ------------------------------------------------------------------ basics
    def git(self, *args: str, input: str | None = None, check: bool = True) -> str:
        p = subprocess.run(
            [*GIT, *args],
            cwd=self.root,
            env=self._env,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
        )
        if check and p.returncode != 0:
            msg = (p.stderr or p.stdout).strip().splitlines()
            raise GitError(f"git {args[0]} failed: {msg[-1] if msg else 'exit ' + str(p.returncode)}")
        return p.stdout

    def ok(self, *args: str) -> bool:
        return subprocess.run([*GIT, *args], cwd=self.root, env=self._env, capture_output=True).returncode == 0

    @staticmethod
    def toplevel(path: Path) -> Path | None:
        p = subprocess.run([*GIT, "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
        return Path(p.stdout.strip()) if p.returncode == 0 else None

    @property
    def git_dir(self) -> Path:
        if self._git_dir is None:  # asked once: it is on the hot path (index.lock check per commit)
            self._git_dir = Path(self.git("rev-parse", "--absolute-git-dir").strip())
        return self._git_dir

    def current_branch(self) -> str | None:
        p = subprocess.run([*GIT, "symbolic-ref", "--short", "-q", "HEAD"], cwd=self.root, env=self._env, capture_output=True, text=True)
        return p.stdout.strip() or None if p.returncode == 0 else None

    def has_commits(self) -> bool:
        return self.ok("rev-parse", "--verify", "-q", "HEAD")

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def rev(self, ref: str) -> str | None:
        p = subprocess.run([*GIT, "rev-parse", "--verify", "-q", ref + "^{commit}"], cwd=self.root, env=self._env, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None

    def branch_exists(self, name: str | None = None) -> bool:
        return self.rev(f"refs/heads/{name or self.branch}") is not None

    def is_tracked(self, path: str) -> bool:
        return bool(self.git("ls-files", "--", path).strip())

    def status(self) -> list[Change]:
        out = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        changes = []
        parts = out.split("\0")
        i = 0
        while i < len(parts):
            item = parts[i]
            i += 1
            if not item:
                continue
            xy, path = item[:2], item[3:]
            if xy[0] in "RC":
                i += 1  # the rename source follows
            changes.append(Change(path, xy))
        return changes

    def tracked_changes(self) -> list[Change]:
        """Changes to tracked files (untracked ones, like the tool's own files, left out)."""
        return [c for c in self.status() if not c.status.startswith("??")]

    # ------------------------------------------------------------- housekeeping
    def ensure_excludes(self) -> None:
        """Ignore rules for the tool's files in .git/info/exclude (the user's .gitignore stays)."""
        path = self.git_dir / "info" / "exclude"
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        lines = set(existing.splitlines())
        wanted = [p for p in TOOL_IGNORES if p not in lines]
        if wanted:
            with open(path, "a", encoding="utf-8") as f:
                if existing and not existing.endswith("\n"):
                    f.write("\n")
                f.write("# autoresearch-tui\n" + "\n".join(wanted) + "\n")

    def add_exclude(self, pattern: str) -> None:
        path = self.git_dir / "info" / "exclude"
        existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if pattern not in existing.splitlines():
            with open(path, "a", encoding="utf-8") as f:
                f.write(("" if not existing or existing.endswith("\n") else "\n") + pattern + "\n")

    def clear_stale_index_lock(self, min_age_s: float = 2.0) -> str | None:
        """Remove `.git/index.lock` if no git process of this repository holds it."""
        lock = self.git_dir / "index.lock"
        if not lock.exists():
            return None
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return None
        root = str(self.root.resolve())
        for p in psutil.process_iter(["name", "cwd"]):
            try:
                if (p.info["name"] or "").startswith("git") and (p.info["cwd"] or "").startswith(root):
                    return None  # a live git process: not stale
            except (psutil.Error, TypeError):
                continue
        if age < min_age_s:
            time.sleep(min_age_s - age)
            if not lock.exists():
                return None
        try:
            lock.unlink()
        except FileNotFoundError:
            return None
        return f"removed a stale {lock.relative_to(self.root) if lock.is_relative_to(self.root) else lock} left by a git process that died"

    def _ensure_identity(self) -> None:
        if self._identity_checked:
            return
        self._identity_checked = True
        if not self.git("config", "user.email", check=False).strip():
            self._env.setdefault("GIT_AUTHOR_NAME", "autoresearch-tui")
            self._env.setdefault("GIT_AUTHOR_EMAIL", "autoresearch-tui@localhost")
            self._env.setdefault("GIT_COMMITTER_NAME", "autoresearch-tui")
            self._env.setdefault("GIT_COMMITTER_EMAIL", "autoresearch-tui@localhost")

    # ----------------------------------------------------------------- branches
    def start_or_resume(self) -> tuple[bool, str]:
        """Check out the research branch, creating it at HEAD if needed. Returns (resumed, start_branch)."""
        current = self.current_branch()
        if current == self.branch:
            return True, current
        if self.branch_exists():
            self.git("checkout", "-q", self.branch)
            return True, current or ""
        self.git("checkout", "-q", "-b", self.branch)
        return False, current or ""

    def experiment_ref(self, n: int) -> str:
        return f"refs/autoresearch/{self.tag}/{n}"

    def set_ref(self, n: int, commit: str) -> str:
        ref = self.experiment_ref(n)
        self.git("update-ref", ref, commit)
        return ref

    # -------------------------------------------------------------- experiments
    def commit_files(self, paths: list[str], message: str) -> str:
        """Stage exactly `paths` and commit them (message via stdin). Returns the new sha."""
        self._ensure_identity()
        self.git("add", "--", *paths)
        self.git("commit", "-q", "--no-verify", "--allow-empty", "-F", "-", input=clean_text(message) + "\n")
        # git has just written the branch's loose ref: read it instead of one more process
        try:
            sha = (self.git_dir / "refs" / "heads" / self.branch).read_text().strip()
            if len(sha) == 40 and self.current_branch_file() == self.branch:
                return sha
        except OSError:
            pass
        return self.head()

    def current_branch_file(self) -> str | None:
        try:
            head = (self.git_dir / "HEAD").read_text().strip()
        except OSError:
            return None
        return head[len("ref: refs/heads/"):] if head.startswith("ref: refs/heads/") else None

    def reset_hard(self, commit: str, verified: bool = False) -> None:
        """Move the research branch (checked out) to `commit`; tracked files follow.
        `verified`: the caller has just checked that HEAD is on the research branch."""
        if not verified and self.current_branch() != self.branch:
            raise GitError(f"refusing to reset: {self.branch} is not checked out")
        self.git("reset", "-q", "--hard", commit)
        self.restore_kept()

    def restore_kept(self) -> None:
        """Put back the bytes of `keep_files` after a reset (the user's uncommitted configuration)."""
        for path, data in self.keep_files.items():
            p = self.root / path
            try:
                if p.read_bytes() != data:
                    p.write_bytes(data)
            except OSError:
                pass

    def restore_paths(self, commit: str, paths: list[str]) -> None:
        self.git("checkout", "-q", commit, "--", *paths)

    def show_file(self, commit: str, path: str) -> bytes | None:
        p = subprocess.run([*GIT, "show", f"{commit}:{path}"], cwd=self.root, env=self._env, capture_output=True)
        return p.stdout if p.returncode == 0 else None

    def diff(self, a: str, b: str, paths: list[str] | None = None) -> str:
        return self.git("diff", "--no-ext-diff", "--no-textconv", a, b, "--", *(paths or []))

    def _apply_zero_context(self, a: str, b: str) -> bool:
        """Apply the change a->b onto the index and tree with no context lines, so that a change
        next to (not on) a line that moved since still applies."""
        patch = self.git("diff", "--no-ext-diff", "--no-textconv", "-U0", "--binary", a, b)
        if not patch.strip():
            return True
        p = subprocess.run([*GIT, "apply", "--index", "--unidiff-zero", "--whitespace=nowarn", "-"],
                           cwd=self.root, env=self._env, input=patch, capture_output=True, text=True)
        return p.returncode == 0

    def _replay(self, a: str, b: str, fallback: list[str], message: str, fail: str) -> str:
        self._ensure_identity()
        if not self._apply_zero_context(a, b):
            self.git("reset", "-q", "--hard", "HEAD", check=False)
            p = subprocess.run([*GIT, *fallback], cwd=self.root, env=self._env, capture_output=True, text=True)
            if p.returncode != 0:
                self.git(fallback[0], "--abort", check=False)
                self.git("reset", "-q", "--hard", "HEAD", check=False)
                raise GitError(fail)
        self.git("commit", "-q", "--no-verify", "--allow-empty", "-F", "-", input=clean_text(message) + "\n")
        return self.head()

    def cherry_pick_onto_head(self, commit: str, message: str) -> str:
        """Apply `commit`'s diff onto HEAD as a new commit (a keep override)."""
        return self._replay(commit + "^", commit, ["cherry-pick", "--no-commit", commit], message,
                            "the experiment's change no longer applies onto the best commit (the same lines changed since)")

    def revert_on_head(self, commit: str, message: str) -> str:
        """Undo `commit`'s diff on HEAD as a new commit (a discard override of a kept row)."""
        return self._replay(commit, commit + "^", ["revert", "--no-commit", commit], message,
                            "the experiment cannot be reverted cleanly on top of later kept changes")

    def log(self, n: int = 30, ref: str | None = None) -> list[tuple[str, str]]:
        out = self.git("log", f"-{n}", "--format=%h%x09%s", ref or self.branch, check=False)
        return [tuple(line.split("\t", 1)) for line in out.splitlines() if "\t" in line]  # type: ignore[misc]
