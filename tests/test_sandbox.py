"""The bubblewrap sandbox, with real `bwrap` (skipped, with the reason, where it is missing or
cannot work), and the "not sandboxed" path with bwrap made unreachable through PATH."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import psutil
import pytest
from conftest import PY, TOY_TRAIN, cli, jsonl_runs, load_cfg, make_repo, run_engine

from autoresearch_tui.engine import sandbox

BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(not BWRAP or bool(sandbox.probe(BWRAP)),
                                 reason="bubblewrap (bwrap) is not installed or cannot create a sandbox here "
                                        "(apt-get install bubblewrap; .ci/run installs it)")

PROBES = """
import os, pathlib, socket, subprocess
def probe(name, fn):
    try:
        fn(); print('PROBE', name, 'ok')
    except Exception as e:
        print('PROBE', name, 'denied', type(e).__name__)
def append(p):
    return lambda: open(p, 'a').write('x')
GD = subprocess.run(['git', 'rev-parse', '--git-common-dir'], capture_output=True, text=True).stdout.strip()
probe('git_config', append(os.path.join(GD, 'config')))
probe('git_hook', append(os.path.join(GD, 'hooks', 'post-commit')))
probe('dot_git', append('.git'))
probe('records', append(os.path.join(os.path.dirname(os.environ['AUTORESEARCH_EXIT_FILE']), 'x.log')))
probe('evaluator', append('prepare.py'))
probe('results', append(os.path.join(os.environ['REPO_ROOT'], 'results.tsv')))
probe('config', append(os.path.join(os.environ['REPO_ROOT'], 'autoresearch.toml')))
probe('outside', append(os.environ['OUTSIDE']))
probe('own_tree', append('scratch.txt'))
probe('tmp', append('/tmp/sandboxed-run.txt'))
probe('network', lambda: socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=2))
probe('app_env', lambda: [1 / 0 for p in pathlib.Path('/proc').glob('[0-9]*') if b'SENTINEL' in (p / 'environ').read_bytes()])
print('GITHEAD', subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip())
"""


def _probes(log: str) -> dict[str, str]:
    return {ln.split()[1]: ln.split()[2] for ln in log.splitlines() if ln.startswith("PROBE ")}


@pytest.fixture()
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                srv.accept()[0].close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


def _outside(tmp_path) -> str:
    """A path on the host outside the repository and outside /tmp (the run's /tmp is its own)."""
    return f"/var/tmp/autoresearch-probe-{tmp_path.name}-{os.getpid()}.txt"


def _env(monkeypatch, root, tmp_path, port):
    monkeypatch.setenv("REPO_ROOT", str(root))
    monkeypatch.setenv("OUTSIDE", _outside(tmp_path))
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("APP_SECRET_SENTINEL", "SENTINEL")  # in the app's environment only


@needs_bwrap
def test_sandboxed_run_writes_only_its_tree_and_tmp_reaches_no_network_nor_the_app(tmp_path, monkeypatch, listener):
    root = make_repo(tmp_path / "r", train=PROBES + TOY_TRAIN, research={"sandbox": "bwrap"})
    _env(monkeypatch, root, tmp_path, listener)
    before = (root / ".git" / "config").read_bytes()
    _, events = run_engine(load_cfg(root), max_iterations=1)
    log = (root / ".autoresearch" / "logs" / "00000.log").read_text()
    got = _probes(log)
    assert got == {"git_config": "denied", "git_hook": "denied", "dot_git": "denied", "records": "denied",
                   "evaluator": "denied", "results": "denied", "config": "denied", "outside": "denied",
                   "own_tree": "ok", "tmp": "ok", "network": "denied", "app_env": "ok"}, log
    assert "SENTINEL" not in log
    assert not os.path.exists(_outside(tmp_path)) and not os.path.exists("/tmp/sandboxed-run.txt")
    assert (root / ".git" / "config").read_bytes() == before
    assert (root / "scratch.txt").exists()
    assert [r["status"] for r in jsonl_runs(root)][0] == "keep"  # a well-behaved run is measured as usual
    assert not any("not sandboxed" in getattr(e, "text", "") for e in events)


@needs_bwrap
def test_sandboxed_runs_in_worktrees_use_git_read_only_and_cannot_write_the_main_git(tmp_path, monkeypatch, listener):
    root = make_repo(tmp_path / "r", train=PROBES + TOY_TRAIN, research={"sandbox": "bwrap", "network": True})
    text = (root / "autoresearch.toml").read_text() + "\n[compute]\nslots = 2\n"
    (root / "autoresearch.toml").write_text(text)
    _env(monkeypatch, root, tmp_path, listener)
    run_engine(load_cfg(root), max_iterations=2)
    runs = jsonl_runs(root)
    assert len(runs) >= 2
    for r in runs:
        log = (root / r["log"]).read_text()
        got = _probes(log)
        for name in ("git_config", "git_hook", "dot_git", "records", "evaluator", "results", "config", "outside"):
            assert got[name] == "denied", (name, log)
        assert got["own_tree"] == "ok" and got["network"] == "ok", log  # network = true
        assert f"GITHEAD {r['commit']}" in log  # git works (read-only) inside the worktree


@needs_bwrap
def test_sandboxed_run_past_its_timeout_leaves_no_process(tmp_path):
    hang = TOY_TRAIN.replace('print("---")', 'import subprocess\nfor _ in range(3):\n'
                             '    subprocess.Popen(["setsid", "sleep", "987.25"])\n'
                             'import time\ntime.sleep(60)\nprint("---")', 1)
    root = make_repo(tmp_path / "r", train=hang, research={"sandbox": "bwrap", "time_budget_s": 1, "timeout_s": 2,
                                                          "kill_grace_s": 0.5})
    run_engine(load_cfg(root), max_iterations=0)
    rec = jsonl_runs(root)[0]
    assert rec["timed_out"] is True
    time.sleep(0.2)
    left = [p for p in psutil.process_iter(["cmdline"]) if "987.25" in " ".join(p.info["cmdline"] or [])]
    assert left == [], left


def _path_without_bwrap(tmp_path) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("git", "setsid", "env"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    (bindir / "python").symlink_to(PY)
    return str(bindir)


def test_auto_without_bwrap_says_once_that_runs_are_not_sandboxed(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "r", research={"sandbox": "auto"})
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    _, events = run_engine(load_cfg(root), max_iterations=2)
    said = [e.text for e in events if type(e).__name__ == "Notice" and "not sandboxed" in e.text]
    assert len(said) == 1 and "bwrap" in said[0], said
    assert len(jsonl_runs(root)) == 3


def test_sandbox_bwrap_required_but_missing_is_one_line_exit_2(tmp_path):
    root = make_repo(tmp_path / "r", research={"sandbox": "bwrap"})
    p = cli(root, "check", env={"PATH": _path_without_bwrap(tmp_path)})
    assert p.returncode == 2, p.stdout + p.stderr
    assert "sandbox" in p.stderr and "Traceback" not in p.stderr, p.stderr
