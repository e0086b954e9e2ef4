"""UI benchmarks, each in a fresh Python process: time to first frame, idle CPU during a quiet
run, key latency and peak RSS under a flood of output, loading 10,000 experiments."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Row = tuple[str, float, str, str, bool, str]

PRELUDE = f"""
import asyncio, json, os, sys, time, resource, tempfile
from pathlib import Path
sys.path.insert(0, {str(ROOT / 'tests')!r}); sys.path.insert(0, {str(ROOT)!r})
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp()


def bare_app():
    # the baseline: a bare Textual app with a footer, measured the same way
    from textual.app import App
    from textual.widgets import Static, Footer

    class Bare(App):
        def compose(self):
            yield Static("hello")
            yield Footer()

    return Bare()
"""


def _py(code: str, timeout: float = 300) -> dict:
    p = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"bench script failed: {p.stderr[-2000:]}")
    return json.loads(lines[-1])


FIRST_FRAME = """
import psutil
created = psutil.Process().create_time()
KIND = sys.argv[1] if len(sys.argv) > 1 else "{kind}"
if KIND == "app":
    from autoresearch_tui.config import load
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.launch import new_session
    cfg = load(Path({root!r}) / "autoresearch.toml")
    app = AutoresearchApp(cfg, engine=new_session(cfg, platform={{"kind": "cpu", "summary": "CPU"}}), run_engine=False)
else:
    app = bare_app()
out = {{}}
def first():
    out["t"] = time.time() - created
    out["litellm"] = "litellm" in sys.modules
    app.exit()
app.call_after_refresh(first)
app.run(headless=True, size=(120, 40))
print(json.dumps(out))
"""


def first_frame(repeat: int = 5) -> list[Row]:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_repo

    with tempfile.TemporaryDirectory() as tmp:
        root = str(make_repo(Path(tmp) / "r"))  # made here: the child measures the app only
        apps = sorted(_py(FIRST_FRAME.format(kind="app", root=root))["t"] for _ in range(repeat))
        bares = sorted(_py(FIRST_FRAME.format(kind="bare", root=root))["t"] for _ in range(repeat))
        lit = _py(FIRST_FRAME.format(kind="app", root=root))["litellm"]
    med, bmed = apps[len(apps) // 2], bares[len(bares) // 2]
    return [("time to first frame (process start to first paint, median of 5)", med, "s", "<= 0.6 s, litellm not imported",
             med <= 0.6 and not lit, f"bare Textual app {bmed:.3f} s: x{med / bmed:.2f}; litellm imported: {lit}")]


IDLE = """
import psutil
from conftest import make_repo, load_cfg, TEST_PLATFORM, TOY_TRAIN
KIND = "{kind}"
me = psutil.Process()
if KIND == "app":
    root = make_repo(Path(tempfile.mkdtemp()) / "r", train=TOY_TRAIN.replace("SLEEP = 0.0", "SLEEP = 60.0"))
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.launch import new_session
    cfg = load_cfg(root)
    eng = new_session(cfg, platform=dict(TEST_PLATFORM))
    app = AutoresearchApp(cfg, engine=eng)
else:
    app = bare_app()
out = {{}}
async def measure():
    await asyncio.sleep(3)
    c0, t0 = sum(me.cpu_times()[:2]), time.time()
    await asyncio.sleep(10)
    out["cpu"] = (sum(me.cpu_times()[:2]) - c0) / (time.time() - t0) * 100
    if KIND == "app":
        eng.stop_now()
        while eng.phase != "stopped":
            await asyncio.sleep(0.1)
    app.exit()
def start():
    asyncio.get_running_loop().create_task(measure())
app.call_after_refresh(start)
app.run(headless=True, size=(120, 40))
print(json.dumps(out))
"""


def idle_cpu() -> list[Row]:
    app = _py(IDLE.format(kind="app"))["cpu"]
    bare = _py(IDLE.format(kind="bare"))["cpu"]
    return [("app CPU while a quiet run goes on (10 s window)", app, "% of a core", "<= 2%", app <= 2.0,
             f"bare Textual app idle {bare:.2f}%")]


FLOOD = """
from conftest import make_repo, load_cfg, TEST_PLATFORM, TOY_TRAIN
import test_ui as T
from autoresearch_tui.ui.screens.modals import TextScreen
from autoresearch_tui.ui.screens.main import MainScreen
QUIET = {quiet}
body = ("t0 = time.time()\\nwhile time.time() - t0 < 12:\\n    time.sleep(0.5)\\n" if QUIET else
        "t0 = time.time()\\nn = 0\\nline = 'x' * 70 + '\\\\n'\\n"
        "while time.time() - t0 < 12:\\n    sys.stdout.write(line * 1000)\\n    n += 1000\\n"
        "    ahead = n / 100000 - (time.time() - t0)\\n    if ahead > 0:\\n        time.sleep(ahead)\\n")
train = TOY_TRAIN.replace("time.sleep(SLEEP)", body)
root = make_repo(Path(tempfile.mkdtemp()) / "r", train=train)
async def main():
    app, eng, events = T._app(root)
    out = {{}}
    async with app.run_test(size=(120, 40)) as pilot:
        await T.wait_for(pilot, lambda: eng.current_run is not None)
        await pilot.pause(1.0)
        lat = []
        t_end = time.monotonic() + 9
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            await pilot.press("question_mark")
            await T.wait_for(pilot, lambda: isinstance(app.screen, TextScreen), 10)
            lat.append(time.monotonic() - t0)
            t0 = time.monotonic()
            await pilot.press("escape")
            await T.wait_for(pilot, lambda: isinstance(app.screen, MainScreen), 10)
            lat.append(time.monotonic() - t0)
            await pilot.pause(0.2)
        out["lat"] = sorted(lat)
        # a light key: focus the idea input and back (no screen switch, no footer rebuild)
        light = []
        for _ in range(20):
            t0 = time.monotonic()
            await pilot.press("i")
            await T.wait_for(pilot, lambda: app.focused is not None and app.focused.id == "idea-input", 10)
            light.append(time.monotonic() - t0)
            await pilot.press("escape")
            await pilot.pause(0.1)
        out["light"] = sorted(light)
        out["lines"] = app.screen.query_one("#logpane").tailer.total_lines
        await T.quit_app(pilot, app, eng)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child started by a big
    # parent would report the parent's peak
    out["rss"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
    print(json.dumps(out))
asyncio.run(main())
"""


def flood() -> list[Row]:
    loud = _py(FLOOD.format(quiet=False))
    quiet = _py(FLOOD.format(quiet=True))
    def p(xs, q):
        return xs[min(len(xs) - 1, int(q * len(xs)))]
    p50, p95, worst = p(loud["lat"], 0.5), p(loud["lat"], 0.95), loud["lat"][-1]
    qp95 = p(quiet["lat"], 0.95)
    lp95, qlp95 = p(loud["light"], 0.95), p(quiet["light"], 0.95)
    return [
        ("key-to-screen latency under 100k lines/s, light key (p95 of `i`: focus the idea input)", lp95 * 1000, "ms",
         "<= 150 ms", lp95 <= 0.150, f"same with a quiet run: p95 {qlp95 * 1000:.0f} ms"),
        ("key-to-screen latency under 100k lines/s, dialog (p95 of opening/closing help)", p95 * 1000, "ms", "<= 150 ms",
         p95 <= 0.150, f"p50 {p50 * 1000:.0f} ms, worst {worst * 1000:.0f} ms; same with a quiet run: p95 {qp95 * 1000:.0f} ms; "
         f"{loud['lines'] / 10:,.0f} lines/s seen by the tailer"),
        ("peak RSS of the app process under the flood", loud["rss"], "MB", "<= 300 MB", loud["rss"] <= 300,
         f"quiet run: {quiet['rss']:.0f} MB"),
    ]


TABLE = """
from conftest import make_repo, load_cfg, TEST_PLATFORM
from autoresearch_tui.ui.app import AutoresearchApp
from autoresearch_tui.launch import new_session
from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine.records import RunRecord
N = {n}
root = make_repo(Path(tempfile.mkdtemp()) / "r")
cfg = load_cfg(root)
app = AutoresearchApp(cfg, engine=new_session(cfg, platform=dict(TEST_PLATFORM)), run_engine=False)
recs = [RunRecord(iteration=i, commit=f"{{i:040x}}", metric=1.0 + (i % 97) * 1e-3, status=("keep", "discard", "crash")[i % 3],
                  description=f"experiment {{i}} LR tweak", memory_gb=1.5, delta_vs_best=0.001) for i in range(N)]
async def main():
    out = {{}}
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        t0 = time.perf_counter()
        app.main.apply(ev.HistoryLoaded(recs, recs[0], recs[0]))
        await pilot.pause()
        out["t"] = time.perf_counter() - t0
        out["rows"] = app.main.query_one("#results").row_count
    print(json.dumps(out))
asyncio.run(main())
"""


def table_load(n: int = 10_000) -> list[Row]:
    r = _py(TABLE.format(n=n))
    assert r["rows"] == min(n, 2000)  # the table keeps the latest 2,000; the chart all
    small = _py(TABLE.format(n=100))
    return [(f"load a session of {n:,} experiments into the table and chart", r["t"], "s", "<= 1 s", r["t"] <= 1.0,
             f"100 experiments: {small['t']:.3f} s")]
