"""Killing whole process trees: workers in their own sessions, SIGTERM ignored, daemons."""

from __future__ import annotations

import time

from conftest import PY, TOY_TRAIN, jsonl_runs, load_cfg, make_repo, pids_alive, run_engine, wait_until

from autoresearch_tui.engine import runner

# A torchrun-shaped tree: the launcher starts workers in their own sessions (setsid); every
# process ignores SIGTERM and records its pid; nobody ever prints the metric.
TORCHRUN_LIKE = """\
import os, signal, subprocess, sys, time
MODE = "ok"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
WORKER = "import signal, time, os; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('pids.txt','a').write(str(os.getpid())+'\\\\n'); time.sleep(600)"
open("pids.txt", "a").write(str(os.getpid()) + "\\n")
if MODE == "hang":
    for _ in range(3):
        subprocess.Popen([sys.executable, "-c", WORKER], start_new_session=True)
    time.sleep(600)
print("val_bpb: 1.0")
"""


def test_timeout_kills_sigterm_ignoring_workers_in_their_own_sessions(tmp_path):
    # the three workers must have started (and written their pids) before the kill at 3 s: a
    # margin of seconds over the ~0.1 s they take, also on a loaded machine
    root = make_repo(tmp_path / "r", train=TORCHRUN_LIKE, research={"time_budget_s": 1, "timeout_s": 3, "kill_grace_s": 0.5})
    cfg = load_cfg(root)
    from test_engine_loop import ScriptedProposer

    prop = ScriptedProposer([("hang", [("train.py", 'MODE = "ok"', 'MODE = "hang"')])])
    t0 = time.time()
    eng, events = run_engine(cfg, proposer=prop, max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash" and rec["timed_out"] is True
    assert "timed out" in rec["crash_reason"]
    pids = [int(x) for x in (root / "pids.txt").read_text().split()]
    assert len(pids) == 5, pids  # baseline root + hang root + 3 workers
    assert pids_alive(pids) == []
    assert rec["survivors"] == 0
    assert time.time() - t0 < 20


def test_kill_tree_finds_double_forked_daemon(tmp_path):
    script = tmp_path / "daemon.py"
    script.write_text(
        "import os, time, signal\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "        open('daemon.pid','w').write(str(os.getpid()))\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "time.sleep(600)\n"
    )
    h = runner.start(f"{PY} {script}", tmp_path, tmp_path / "log", tmp_path / "exit", 5)
    pidfile = tmp_path / "daemon.pid"
    dpid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the daemon to write its pid"))
    assert pids_alive([dpid]) == [dpid]
    left = runner.kill_tree(h, grace_s=0.3)
    assert left == 0
    assert pids_alive([dpid, h.pid]) == []


def test_run_that_forks_a_daemon_leaves_nothing_behind(tmp_path):
    # the run ends only once its daemon has written its pid (however long that takes)
    src = TOY_TRAIN + (
        "\nimport subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', \"import os,time; open('d.pid.tmp','w').write(str(os.getpid())); "
        "os.rename('d.pid.tmp', 'd.pid'); time.sleep(600)\"], start_new_session=True)\n"
        "while not os.path.exists('d.pid'):\n"
        "    time.sleep(0.02)\n"
    )
    root = make_repo(tmp_path / "r", train=src)
    cfg = load_cfg(root)
    from test_engine_loop import ScriptedProposer

    run_engine(cfg, proposer=ScriptedProposer([]), max_iterations=1)  # the baseline only
    dpid = int((root / "d.pid").read_text())
    assert pids_alive([dpid]) == []
    assert jsonl_runs(root)[0]["survivors"] == 0


def test_exit_status_file_and_environment(tmp_path):
    h = runner.start("echo hi; exit 3", tmp_path, tmp_path / "log", tmp_path / "exit", 7)
    wait_until(lambda: not runner.is_alive(h), 30, "the command to end", interval=0.02)
    assert runner.read_exit_code(h) == 3
    assert (tmp_path / "exit").read_text().strip() == "3"
    assert (tmp_path / "log").read_text() == "hi\n"


def test_scrub_env_removes_keys_and_tokens():
    env = {"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "HF_TOKEN": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "KEYBOARD": "us", "MONKEY": "1", "DB_PASSWORD": "p",
           "MYTOKEN": "t", "DBPASSWORD": "p", "GITHUB_PAT": "g", "DATABASE_URL": "postgres://u:pw@h/db", "PWD": "/x",
           "PATCH_LEVEL": "1"}
    # the documented rule: names that *contain* KEY/TOKEN/SECRET/PASSWORD…, PAT as a word, URLs with a password
    assert runner.scrub_env(env) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "PWD": "/x", "PATCH_LEVEL": "1"}
    assert runner.scrub_env(env, keep=["KEYBOARD"])["KEYBOARD"] == "us"
