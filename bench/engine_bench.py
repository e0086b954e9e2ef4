"""Engine benchmarks: duty cycle with a slow LLM, loop overhead vs bare git, kill latency,
results I/O. Each returns rows: (name, value, unit, goal text, met?, baseline/ratio note)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import TEST_PLATFORM, make_repo  # noqa: E402

from autoresearch_tui.config import load  # noqa: E402
from autoresearch_tui.engine import events as ev  # noqa: E402
from autoresearch_tui.engine import runner  # noqa: E402
from autoresearch_tui.launch import new_session  # noqa: E402

Row = tuple[str, float, str, str, bool, str]

SLEEPY = """\
import os, time
WIDTH = 32
DEPTH = 2
LR = 0.01
t0 = time.time()
time.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET"]))
print("val_bpb: 1.000000")
"""


def _session(root: Path, n: int, proposer=None) -> tuple[list[Any], float]:
    cfg = load(root / "autoresearch.toml")
    eng = new_session(cfg, proposer=proposer, max_iterations=n, platform=dict(TEST_PLATFORM), poll_s=0.02)
    events: list[tuple[float, Any]] = []
    eng.subscribe(lambda e: events.append((time.perf_counter(), e)))
    t0 = time.perf_counter()
    asyncio.run(eng.run())
    return events, time.perf_counter() - t0


def _duty(events: list[tuple[float, Any]]) -> float:
    """Fraction of the wall time, from the first run's start to the last run's end, during
    which an experiment was running."""
    starts = [t for t, e in events if isinstance(e, ev.RunStarted)]
    ends = [t for t, e in events if isinstance(e, ev.RunFinished)]
    running = sum(b - a for a, b in zip(starts, ends, strict=False))
    return running / (ends[-1] - starts[0])


def duty_cycle(n: int = 6, budget: float = 3.0, latency: float = 0.3) -> list[Row]:
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_server import ScriptedLLM, edit

    from autoresearch_tui.proposers.llm import LLMProposer, load_litellm

    load_litellm()  # the import is paid once, not inside a measured session
    out = {}
    for pipeline in (True, False):
        # distinct edits of the same line; the metric does not move, so every experiment is a
        # discard and a prepared edit always still applies (the re-ask after a keep is the
        # exception, not the steady state)
        replies = [{"delay": latency, **edit(f"lr {k}", "LR = 0.01", f"LR = {0.011 + k / 1000:.3f}")} for k in range(3 * n)]
        with ScriptedLLM(replies) as srv, tempfile.TemporaryDirectory() as tmp:
            root = make_repo(Path(tmp) / "r", train=SLEEPY, research={"time_budget_s": budget},
                             proposer={"kind": "llm", "model": "openai/bench", "api_base": srv.base, "pipeline": pipeline})
            os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-secret")
            cfg = load(root / "autoresearch.toml")
            events, wall = _session(root, n, LLMProposer(cfg))
            out[pipeline] = _duty(events)
    ratio = f"without pipelining {out[False] * 100:.2f}% (x{out[True] / out[False]:.3f})"
    return [(f"duty cycle, {budget:g} s runs, LLM latency {latency:g} s, pipelined", out[True] * 100, "%", ">= 99%",
             out[True] >= 0.99, ratio)]


def loop_overhead(n: int = 30) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_repo(Path(tmp) / "r", train=SLEEPY, research={"time_budget_s": 0.001, "command": "echo 'val_bpb: 1.0'"})
        # the command ignores the script: every run is instant and equal (all discards after the baseline)
        events, wall = _session(root, n)
        gaps = []
        last_end = None
        for t, e in events:
            if isinstance(e, ev.RunFinished):
                last_end = t
            elif isinstance(e, ev.RunStarted) and last_end is not None:
                gaps.append(t - last_end)
        # the same git work done bare: add + commit + update-ref + reset --hard, per iteration
        bare = []
        for i in range(n):
            (root / "train.py").write_text(SLEEPY.replace("WIDTH = 32", f"WIDTH = {1000 + i}"))
            t0 = time.perf_counter()
            for args in (["add", "--", "train.py"], ["commit", "-q", "-m", f"bare {i}"],
                         ["update-ref", f"refs/bench/{i}", "HEAD"], ["reset", "-q", "--hard", "HEAD~1"]):
                subprocess.run(["git", *args], cwd=root, capture_output=True, check=True)
            bare.append(time.perf_counter() - t0)
    med, bmed = statistics.median(gaps) * 1000, statistics.median(bare) * 1000
    return [("engine overhead per iteration (median, run and proposal excluded)", med, "ms", "<= 50 ms and <= 2x bare git",
             med <= 50 and med <= 2 * bmed, f"bare git (add, commit, update-ref, reset) {bmed:.1f} ms: x{med / bmed:.2f}")]


WORKER = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
          "open(os.environ['PIDS'], 'a').write(str(os.getpid()) + '\\n'); time.sleep(600)")
TREE = (f"import os, signal, subprocess, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"for _ in range(3):\n    subprocess.Popen([sys.executable, '-c', {WORKER!r}], start_new_session=True)\n"
        f"open(os.environ['PIDS'], 'a').write(str(os.getpid()) + '\\n')\ntime.sleep(600)\n")


def kill_latency(cycles: int = 100, grace: float = 0.3) -> list[Row]:
    import psutil

    lat, survivors = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "tree.py").write_text(TREE)
        for i in range(cycles):
            pids = d / f"pids{i}"
            os.environ["PIDS"] = str(pids)
            h = runner.start(f"{sys.executable} tree.py", d, d / f"{i}.log", d / f"{i}.exit", 1)
            while not pids.exists() or len(pids.read_text().split()) < 4:
                time.sleep(0.01)
            deadline = time.perf_counter()
            left = runner.kill_tree(h, grace)
            all_pids = [int(x) for x in pids.read_text().split()]
            while True:
                alive = [p for p in all_pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
                if not alive or time.perf_counter() - deadline > 10:
                    break
                time.sleep(0.005)
            lat.append(time.perf_counter() - deadline)
            survivors += len(alive) + left
    p50, worst = statistics.median(lat), max(lat)
    return [
        (f"kill latency, {cycles} trees (setsid workers ignoring SIGTERM), grace {grace:g} s: worst", worst, "s",
         f"<= grace + 0.5 s = {grace + 0.5:g} s", worst <= grace + 0.5, f"median {p50:.3f} s; minus the grace: {worst - grace:.3f} s"),
        ("kill survivors", survivors, "processes", "0", survivors == 0, ""),
    ]


def results_io(rows: int = 100_000) -> list[Row]:
    from autoresearch_tui.engine.results import ResultsStore, tsv_row

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".autoresearch").mkdir()
        recs = [{"kind": "run", "iteration": i, "commit": f"{i:040x}", "metric": 1.0 + i * 1e-6, "memory_gb": 1.5,
                 "status": ("keep", "discard", "crash")[i % 3], "description": f"experiment number {i} with a few words",
                 "secondary": {"training_seconds": 300.0}, "duration_s": 301.2} for i in range(rows)]
        with open(root / ".autoresearch" / "runs.jsonl", "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        with open(root / "results.tsv", "w") as f:
            f.write("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n")
            for r in recs:
                f.write(tsv_row(r))
        store = ResultsStore(root, "results.tsv", "val_bpb")
        t0 = time.perf_counter()
        loaded = store.load()
        t = time.perf_counter() - t0
        assert len(loaded.records) == rows
        t0 = time.perf_counter()
        with open(root / ".autoresearch" / "runs.jsonl") as f:
            _ = [json.loads(line) for line in f]
        with open(root / "results.tsv") as f:
            _ = [line.split("\t") for line in f]
        bare = time.perf_counter() - t0
    return [(f"load {rows:,}-row results.tsv + runs.jsonl", t, "s", "<= 0.5 s", t <= 0.5,
             f"bare json.loads + split of the same files {bare:.3f} s: x{t / bare:.2f}")]


def _slot_spans(events: list[tuple[float, Any]]) -> dict[int, list[tuple[float, float]]]:
    """Per slot, the (start, end) of each experiment run (the baseline runs excluded)."""
    starts: dict[int, tuple[int, float]] = {}
    spans: dict[int, list[tuple[float, float]]] = {}
    for t, e in events:
        if isinstance(e, ev.RunStarted) and e.iteration > 0 and "baseline" not in e.description:
            starts[e.iteration] = (e.slot, t)
        elif isinstance(e, ev.RunFinished) and e.iteration in starts:
            slot, t0 = starts.pop(e.iteration)
            spans.setdefault(slot, []).append((t0, t))
    return spans


def _slots_repo(tmp: str, slots: int, budget: float, **kw: Any) -> Path:
    root = make_repo(Path(tmp) / "r", train=SLEEPY, research={"time_budget_s": budget, **kw.pop("research", {})}, **kw)
    with open(root / "autoresearch.toml", "a") as f:
        f.write(f"\n[compute]\nslots = {slots}\ngpus = {[str(i) for i in range(slots)]}\n")
    return root


def slots_throughput(per_slot: int = 5, budget: float = 3.0, counts: tuple[int, ...] = (1, 2, 4)) -> list[Row]:
    """Experiments per hour with 1, 2 and 4 slots of `budget`-second runs (fake GPU ids, the
    offline proposer), against N x one slot measured in the same run."""
    rate: dict[int, float] = {}
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            root = _slots_repo(tmp, n, budget)
            events, _ = _session(root, n * per_slot)
        spans = [s for v in _slot_spans(events).values() for s in v]
        t0, t1 = min(a for a, _ in spans), max(b for _, b in spans)
        rate[n] = len(spans) / (t1 - t0) * 3600
    rows = []
    for n in counts[1:]:
        ratio = rate[n] / (n * rate[counts[0]])
        rows.append((f"experiments per hour, {n} slots of {budget:g} s runs", rate[n], "/h", ">= 0.95 x N x one slot",
                     ratio >= 0.95, f"one slot {rate[counts[0]]:.0f}/h; ratio to {n} x one slot {ratio:.3f}"))
    return rows


def slots_duty(slots: int = 4, per_slot: int = 4, budget: float = 3.0, latency: float = 0.3) -> list[Row]:
    """Per-slot duty cycle with the scripted LLM (0.3 s per answer), several slots at once."""
    from llm_server import ScriptedLLM, edit

    from autoresearch_tui.proposers.llm import LLMProposer, load_litellm

    load_litellm()
    n = slots * per_slot
    replies = [{"delay": latency, **edit(f"lr {k}", "LR = 0.01", f"LR = {0.011 + k / 1000:.3f}")} for k in range(4 * n)]
    with ScriptedLLM(replies) as srv, tempfile.TemporaryDirectory() as tmp:
        root = _slots_repo(tmp, slots, budget, proposer={"kind": "llm", "model": "openai/bench", "api_base": srv.base})
        os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-secret")
        events, _ = _session(root, n, LLMProposer(load(root / "autoresearch.toml")))
    duties = []
    for spans in _slot_spans(events).values():
        busy = sum(b - a for a, b in spans)
        duties.append(busy / (spans[-1][1] - spans[0][0]))
    worst = min(duties) * 100
    return [(f"per-slot duty cycle, {slots} slots, {budget:g} s runs, LLM latency {latency:g} s", worst, "%", ">= 98% (worst slot)",
             worst >= 98, "slots: " + ", ".join(f"{d * 100:.2f}%" for d in duties))]


def slots_overhead(slots: int = 4, n: int = 40) -> list[Row]:
    """Engine overhead per experiment with 4 slots: a slot's gap from one run's end to its next start."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _slots_repo(tmp, slots, 0.001, research={"command": "echo 'val_bpb: 1.0'"})
        events, _ = _session(root, n)
    gaps = []
    for spans in _slot_spans(events).values():
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    med = statistics.median(gaps) * 1000
    return [(f"engine overhead per experiment, {slots} slots (median gap in a slot)", med, "ms", "<= 100 ms",
             med <= 100, f"{len(gaps)} gaps; 90th percentile {statistics.quantiles(gaps, n=10)[-1] * 1000:.1f} ms")]


def slurm_vs_local(slots: int = 4, per_slot: int = 3, budget: float = 3.0) -> list[Row]:
    """On a loopback Slurm (tests/slurm_cluster.py): submission-to-start latency and experiments
    per hour, against local slots measured in the same run."""
    from slurm_cluster import LoopbackSlurm

    rates: dict[str, float] = {}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LoopbackSlurm(Path(tmp) / "slurm")
        why = cluster.start()
        if why:
            return [("slurm vs local", float("nan"), "", "", False, f"skipped: {why}")]
        old = os.environ.get("SLURM_CONF")
        os.environ.update(cluster.env)
        try:
            for executor in ("local", "slurm"):
                with tempfile.TemporaryDirectory() as t2:
                    root = make_repo(Path(t2) / "r", train=SLEEPY, research={"time_budget_s": budget})
                    with open(root / "autoresearch.toml", "a") as f:
                        f.write(f'\n[compute]\nexecutor = "{executor}"\nslots = {slots}\n'
                                + (f'gpus = {[str(i) for i in range(slots)]}\n' if executor == "local" else ""))
                    events, _ = _session(root, slots * per_slot)
                    spans = [s for v in _slot_spans(events).values() for s in v]
                    rates[executor] = len(spans) / (max(b for _, b in spans) - min(a for a, _ in spans)) * 3600
                    if executor == "slurm":
                        submitted = {e.iteration: e.started_at for _, e in events if isinstance(e, ev.RunStarted)}
                        for n, t0 in submitted.items():
                            try:
                                data = json.loads((root / ".autoresearch" / "logs" / f"{n:05d}.exit").read_text())
                            except (OSError, ValueError):
                                continue
                            latencies.append(float(data["started_at"]) - t0)
        finally:
            cluster.stop()
            if old is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old
    med = statistics.median(latencies)
    ratio = rates["slurm"] / rates["local"]
    return [
        ("slurm: submission to start (median, loopback cluster)", med, "s", "reported", True,
         f"{len(latencies)} jobs; max {max(latencies):.2f} s (the controller schedules every second)"),
        (f"slurm: experiments per hour, {slots} jobs in flight, {budget:g} s runs", rates["slurm"], "/h", "reported", True,
         f"local {slots} slots in the same run {rates['local']:.0f}/h: x{ratio:.2f}"),
    ]


def duty_failing_model(n: int = 8, budget: float = 3.0, latency: float = 0.3) -> list[Row]:
    """Duty cycle with a model that fails every second round (prose without an edit; or an HTTP
    500), against a healthy model measured in the same run, and against the same failing model
    without the fallback (`[proposer] fallback = "none"`): the fallback keeps the slot busy."""
    from llm_server import ScriptedLLM, edit

    from autoresearch_tui.proposers.llm import LLMProposer, load_litellm

    load_litellm()
    prose = {"content": "I would try a larger learning rate; it often helps."}
    failures = {"prose": prose, "http 500": {"status": 500, "body": "overloaded"}}
    duty: dict[tuple[str, str], float] = {}
    share: dict[str, float] = {}
    cases = [("healthy", "mutate")] + [(name, fb) for name in failures for fb in ("mutate", "none")]
    for name, fallback in cases:
        bad = failures.get(name)
        replies = []
        for k in range(3 * n):
            replies.append({"delay": latency, **edit(f"lr {k}", "LR = 0.01", f"LR = {0.011 + k / 1000:.3f}")})
            if bad is not None:
                replies.append({"delay": latency, **bad})
        with ScriptedLLM(replies) as srv, tempfile.TemporaryDirectory() as tmp:
            root = make_repo(Path(tmp) / "r", train=SLEEPY, research={"time_budget_s": budget},
                             proposer={"kind": "llm", "model": "openai/bench", "api_base": srv.base, "max_attempts": 1,
                                       "fallback": fallback})
            os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-secret")
            events, _ = _session(root, n, LLMProposer(load(root / "autoresearch.toml")))
            recs = [json.loads(ln) for ln in (root / ".autoresearch" / "runs.jsonl").read_text().splitlines() if '"kind": "run"' in ln]
        duty[name, fallback] = _duty(events)
        exps = [r for r in recs if not r.get("is_baseline")]
        if fallback == "mutate":
            share[name] = sum(1 for r in exps if r.get("fallback")) / max(1, len(exps))
    healthy = duty["healthy", "mutate"]
    rows = []
    for name in failures:
        got = duty[name, "mutate"]
        rows.append((f"duty cycle, model failing every second round ({name}), {budget:g} s runs, LLM latency {latency:g} s",
                     got * 100, "%", "within 3 points of the healthy model", (healthy - got) * 100 <= 3,
                     f"healthy model {healthy * 100:.2f}% (same run); without the fallback {duty[name, 'none'] * 100:.2f}%; "
                     f"{share[name] * 100:.0f}% of the experiments from the fallback"))
    return rows
