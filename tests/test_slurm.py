"""The Slurm executor on a real single-node Slurm on loopback (see slurm_cluster.py): jobs
measured and kept, a SIGTERM-ignoring tree killed at the timeout, distinct GPUs, a pending job,
re-attach after kill -9, a job cancelled by someone else, kill and stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PY, TOY_TRAIN, Gate, cli, drive_engine, git, jsonl_runs, load_cfg, make_repo, pids_alive, until
from slurm_cluster import LoopbackSlurm
from test_resume_and_guard import Lines

from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine.executors.slurm import time_limit


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LoopbackSlurm(tmp_path_factory.mktemp("slurm"))
    why = cluster.start()
    if why:
        pytest.skip(why)
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)  # the app, its CLI and the tests' own squeue/scancel find the cluster
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def _repo(tmp_path, train=TOY_TRAIN, slots=2, research=None, compute="") -> Path:
    root = make_repo(tmp_path / "r", train=train, research={"time_budget_s": 60, **(research or {})})
    with open(root / "autoresearch.toml", "a") as f:
        f.write(f'\n[compute]\nexecutor = "slurm"\nslots = {slots}\n{compute}')
    git(root, "commit", "-qam", "slurm")
    return root


def _spy(where: Path) -> str:
    return (f"import json as _j, os as _o\n_o.makedirs({str(where)!r}, exist_ok=True)\n"
            f"_j.dump({{'cwd': _o.getcwd(), 'gpus': _o.environ.get('CUDA_VISIBLE_DEVICES'), 'job': _o.environ.get('SLURM_JOB_ID'),"
            f" 'name': _o.environ.get('SLURM_JOB_NAME'), 'key': _o.environ.get('OPENAI_API_KEY')}},"
            f" open(_o.path.join({str(where)!r}, _o.environ['AUTORESEARCH_ITERATION'] + '.json'), 'w'))\n")


def _queue() -> list[str]:
    return subprocess.run(["squeue", "-h", "--me", "-o", "%i|%T|%j"], capture_output=True, text=True).stdout.split()


def test_time_limit_is_the_timeout_plus_a_margin_in_whole_minutes():
    assert time_limit(600) == "0:12:00" and time_limit(5) == "0:03:00" and time_limit(3700) == "1:04:00"


def test_jobs_run_in_shared_worktrees_on_distinct_gpus_measured_and_kept(tmp_path, slurm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-the-job")
    gate, spy = Gate(tmp_path / "gate"), tmp_path / "seen"
    root = _repo(tmp_path, train=_spy(spy) + gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"))

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 2, 120, "two jobs running at once")
        names = {ln.split("|")[2] for ln in _queue()}
        assert names == {f"autoresearch-t1-{s.iteration}" for s in eng.slots}
        gate.open()

    drive_engine(load_cfg(root), driver, max_iterations=2)
    recs = jsonl_runs(root)
    assert len(recs) >= 3 and all(r["status"] in ("keep", "discard") for r in recs)
    assert recs[0]["metric"] == pytest.approx(2.124) and any(r["status"] == "keep" for r in recs[1:])
    seen = {int(p.stem): json.loads(p.read_text()) for p in spy.glob("*.json")}
    exp = [seen[n] for n in (1, 2)]
    assert {s["gpus"] for s in exp} == {"0", "1"} or len({s["gpus"] for s in exp}) == 2  # Slurm gave each its own GPU
    assert all("/.autoresearch/worktrees/slot-" in s["cwd"] and s["job"] for s in seen.values())
    assert all(s["key"] is None for s in seen.values())  # secrets never reach a job
    assert _queue() == [] and not (root / ".autoresearch" / "worktrees").exists()
    best = max((r for r in recs if r["status"] == "keep"), key=lambda r: recs.index(r))
    assert git(root, "rev-parse", "autoresearch/t1").strip() == best["commit"]


TREE = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    LR = 0.01
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    W = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({pids!r}, 'a').write(str(os.getpid()) + chr(10)); time.sleep(600)"
    if LR != 0.01:
        for _ in range(2):
            subprocess.Popen([sys.executable, '-c', W], start_new_session=True)
        open({pids!r}, 'a').write(str(os.getpid()) + chr(10))
        time.sleep(600)
    print("val_bpb: 1.5")
    """)


def test_a_sigterm_ignoring_tree_is_killed_at_the_timeout_with_no_survivor(tmp_path, slurm):
    pids = tmp_path / "pids"
    root = _repo(tmp_path, train=TREE.format(pids=str(pids)), slots=1, research={"time_budget_s": 2, "timeout_s": 4, "kill_grace_s": 1})
    from conftest import run_engine

    run_engine(load_cfg(root), max_iterations=1)
    rec = jsonl_runs(root)[1]
    assert rec["status"] == "crash" and "timed out" in rec["crash_reason"], rec
    found = [int(x) for x in pids.read_text().split()]
    assert len(found) == 3 and pids_alive(found) == []  # the launcher and both setsid workers are gone
    assert _queue() == []


def test_a_job_that_waits_for_gpus_shows_as_queued_and_its_budget_starts_when_it_runs(tmp_path, slurm):
    gate = Gate(tmp_path / "gate")
    # 3 GPUs per job on a node with 4: the second job waits until the first ends
    root = _repo(tmp_path, train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), compute="gpus_per_run = 3\n")

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 1 and any(s.state == "queued" for s in eng.slots), 120, "one running, one queued")
        queued = next(s for s in eng.slots if s.state == "queued")
        assert queued.started_at == 0  # no elapsed time while pending
        gate.open()
        await until(lambda: gate.arrived() == 2, 120, "the queued job to run once GPUs are free")

    drive_engine(load_cfg(root), driver, max_iterations=2)
    recs = jsonl_runs(root)
    assert [r["status"] for r in recs].count("crash") == 0 and len(recs) >= 3


def test_kill_9_of_the_app_then_restart_reattaches_to_the_job(tmp_path, slurm):
    gate = Gate(tmp_path / "gate")
    root = _repo(tmp_path, train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"), slots=1)
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "2"], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        gate.wait_arrived(0)
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
    saved = json.loads((root / ".autoresearch" / "state.json").read_text())["inflight_runs"]
    job = next(iter(saved.values()))["job_id"]
    assert any(ln.startswith(f"{job}|RUNNING") for ln in _queue())  # the job lives on without the app
    app = subprocess.Popen([PY, "-m", "autoresearch_tui", "--headless", "--max-iterations", "1"], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        out = Lines(app)
        out.wait_for("re-attached to experiment #1", 60)  # while the job still waits at the gate
        gate.open()
        app.wait(timeout=180)
    finally:
        gate.open()
    assert app.returncode == 0, app.stderr.read()
    recs = jsonl_runs(root)
    its = [r["iteration"] for r in recs]
    assert its[:2] == [0, 1] and len(its) == len(set(its)) and recs[1]["metric"] is not None
    assert gate.arrived() == 2  # #1 ran once (re-attached, not re-submitted), then #2
    assert _queue() == []


def test_a_job_cancelled_by_someone_else_is_a_crash_with_that_reason_and_x_kills(tmp_path, slurm):
    gate = Gate(tmp_path / "gate")
    root = _repo(tmp_path, train=gate.script(when="(LR, WIDTH, DEPTH) != (0.01, 32, 2)"))

    async def driver(eng, events):
        await until(lambda: gate.arrived() == 2, 120, "two jobs running")
        await until(lambda: sum(s.handle is not None for s in eng.ctx.slots) == 2, 60, "the engine holding both jobs")
        a, b = sorted((s for s in eng.ctx.slots if s.handle is not None), key=lambda s: s.iteration)
        na, nb = a.iteration, b.iteration
        await asyncio.to_thread(subprocess.run, ["scancel", a.handle.job_id], check=True)  # someone else cancels #a
        assert eng.kill_run(slot=b.index)  # the user kills #b (x)
        await until(lambda: {na, nb} <= {e.record.iteration for e in events if isinstance(e, ev.Decision)}, 120, "both recorded")
        eng.stop_now()
        return na, nb

    _, _, (na, nb) = drive_engine(load_cfg(root), driver, max_iterations=0)
    recs = {r["iteration"]: r for r in jsonl_runs(root)}
    assert recs[na]["status"] == "crash" and "cancelled" in recs[na]["crash_reason"], recs[na]
    assert recs[nb]["status"] == "crash" and "killed by the user" in recs[nb]["crash_reason"], recs[nb]
    assert _queue() == []  # a stop leaves no job behind


def test_check_says_what_is_wrong_with_the_slurm_settings(tmp_path, slurm):
    root = _repo(tmp_path, compute='partition = "nosuch"\n')
    p = cli(root, "check")
    assert p.returncode == 2 and "partition 'nosuch' does not exist" in p.stderr and "Traceback" not in p.stderr
    root2 = _repo(tmp_path / "b", compute='partition = "debug"\n')
    p = cli(root2, "check")
    assert p.returncode == 0 and "Slurm: up to 2 jobs in flight on partition debug" in p.stdout, p.stdout + p.stderr
    bare = tmp_path / "bin"  # git and a shell, no Slurm commands
    bare.mkdir()
    for tool in ("git", "sh"):
        (bare / tool).symlink_to(__import__("shutil").which(tool))
    p = cli(root2, "check", env={"PATH": str(bare)})
    assert p.returncode == 2 and "sbatch" in p.stderr and "not found on PATH" in p.stderr
