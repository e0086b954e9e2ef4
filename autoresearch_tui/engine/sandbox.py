"""The sandbox a run is started in: bubblewrap (`bwrap`), or nothing.

A run is untrusted code (a model wrote it). With `[research] sandbox = "auto"` (the default) or
`"bwrap"`, every run, confirmation and guard command starts inside `bwrap`:

* the whole filesystem read-only, except the slot's working tree, a private `/tmp` and the
  folders named in `writable` (caches);
* inside the working tree, read-only again: `.git` (a worktree's `.git` file and the main
  repository's `.git` it points into), `.autoresearch/` (records, logs, state, lock), the
  read-only evaluator files, the results file, the configuration and the session notes;
* no network unless `network = true` (only a loopback is left);
* its own pid namespace (it can neither see nor signal the app), no capabilities (root inside
  cannot remount what is read-only), a new session (no keystrokes pushed into the terminal),
  and it dies with its parent;
* GPU device files (`/dev/nvidia*`, `/dev/dri`, `/dev/kfd`) passed through.

`"auto"` falls back to no sandbox when bwrap is missing or does not work here (some
containers forbid user namespaces), and the session says so once. `"bwrap"` makes that a
setup error instead.
"""

from __future__ import annotations

import glob
import os
import sys
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "bwrap", "none")
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri", "/dev/kfd")
#: the user's credential stores, hidden from a sandboxed run (empty in its view)
CREDENTIALS = ("~/.ssh", "~/.gnupg", "~/.aws", "~/.azure", "~/.config/gcloud", "~/.config/gh", "~/.kube", "~/.docker",
               "~/.netrc", "~/.git-credentials", "~/.pypirc", "~/.config/autoresearch-tui/keys")

_probed: dict[str, str] = {}  # bwrap path -> '' (works) or why not


def probe(binary: str) -> str:
    """'' when `binary` can start a sandbox here, else why not (asked once per binary)."""
    if binary not in _probed:
        try:
            p = subprocess.run([binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                                "--unshare-net", "--cap-drop", "ALL", "--", "/bin/true"],
                               capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
            why = "" if p.returncode == 0 else (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            why = str(e)
        _probed[binary] = why
    return _probed[binary]


@dataclass
class Decision:
    """What the session uses: `binary` is the bwrap to run ('' = no sandbox), `note` what to say once."""

    binary: str
    note: str = ""
    error: str = ""


def decide(mode: str, config_name: str = "autoresearch.toml") -> Decision:
    if mode == "none":
        return Decision("", "runs are not sandboxed ([research] sandbox = \"none\"): a run can write anything the user can")
    binary = shutil.which("bwrap") or ""
    why = probe(binary) if binary else "bwrap (bubblewrap) is not installed"
    if not why:
        return Decision(binary)
    if mode == "bwrap":
        return Decision("", error=f"{config_name}: [research] sandbox = \"bwrap\" but {why}; install bubblewrap "
                                  "(apt-get install bubblewrap) or set sandbox = \"auto\"")
    return Decision("", f"runs are not sandboxed: {why} (install bubblewrap, or set [research] sandbox = \"none\" "
                        "to silence this)")


def for_slot(binary: str, root: Path, workdir: Path, results_file: str, config_path: Path, read_only: list[str],
             program: str, writable: list[str], network: bool) -> list[str]:
    """The bwrap argv for a run in `workdir` of the repository at `root`."""
    root, workdir = Path(root), Path(workdir)
    protected = [workdir / ".git", *(workdir / p for p in read_only)]
    if workdir == root:  # a worktree under .autoresearch/ has the rest of the repository read-only already
        protected += [root / ".autoresearch", root / results_file, Path(config_path).resolve(), root / "autoresearch.md",
                      root / "autoresearch-summary.md", root / "run.log", *([root / program] if program else [])]
    extra = []
    for w in writable:
        wp = Path(w).expanduser()
        wp = wp if wp.is_absolute() else root / wp
        try:
            wp.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        extra.append(wp)
    return bwrap_argv(binary, root, workdir, protected, extra, network)


def _interpreters() -> list[Path]:
    """The Python environment(s) the app runs in (the runs' `python` is usually the same)."""
    out: list[Path] = []
    for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))):
        path = Path(p)
        if path not in out and path != Path("/"):
            out.append(path)
    return out


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if os.path.lexists(p)]


def bwrap_argv(binary: str, root: Path, workdir: Path, protected: list[Path], writable: list[Path],
               network: bool) -> list[str]:
    """The bwrap command line (up to and including `--`) for a run in `workdir` (the repository
    `root` or a worktree inside it). `protected`: paths mounted read-only again over the
    writable working tree; `writable`: extra writable folders."""
    workdir = Path(workdir)
    argv = [binary, "--ro-bind", "/", "/", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    for pattern in GPU_DEVICES:
        for dev in sorted(glob.glob(pattern)):
            argv += ["--dev-bind-try", dev, dev]
    argv += ["--perms", "1777", "--tmpfs", "/tmp"]
    if Path(root).is_relative_to("/tmp"):  # the private /tmp would hide a repository that lives there
        argv += ["--ro-bind", str(root), str(root)]
    for env in _interpreters():  # … or the Python environment the runs use (a CI's venv in /tmp)
        if env.is_relative_to("/tmp") and not env.is_relative_to(root):
            argv += ["--ro-bind", str(env), str(env)]
    argv += ["--bind", str(workdir), str(workdir)]
    for w in writable:
        argv += ["--bind-try", str(w), str(w)]
    for p in _existing(protected):
        argv += ["--ro-bind", str(p), str(p)]
    for p in _existing([Path(x).expanduser() for x in CREDENTIALS]):
        argv += ["--tmpfs", str(p)] if p.is_dir() else ["--ro-bind", "/dev/null", str(p)]
    argv += ["--unshare-pid", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    if not network:
        argv.append("--unshare-net")
    argv += ["--chdir", str(workdir), "--"]
    return argv

