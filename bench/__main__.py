"""`python -m bench [--quick] [--write] [NAME ...]`: run the benchmarks, print a table.

--write   also replace the table in BENCHMARKS.md (with the machine and the date); with NAMEs,
          the table of exactly those benchmarks (a block of its own)
--quick   fewer repetitions (kill cycles 20 instead of 100, shorter sessions)
NAME      only these: duty, duty_failing, overhead, kill, io, slots, slots_duty, slots_overhead, slurm, early_stop,
          first_frame, idle, flood, table, keep, search
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import curves_bench as C  # noqa: E402
from bench import engine_bench as E  # noqa: E402
from bench import policy_bench as P  # noqa: E402
from bench import search_bench as S  # noqa: E402
from bench import ui_bench as U  # noqa: E402


def machine() -> str:
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 1024**3:.0f} GB"
    except ImportError:
        mem = "?"
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    write = "--write" in argv
    names = [a for a in argv if not a.startswith("--")]
    suite = {
        "duty": lambda: E.duty_cycle(n=4 if quick else 8),
        "duty_failing": lambda: E.duty_failing_model(n=4 if quick else 8),
        "overhead": lambda: E.loop_overhead(n=15 if quick else 30),
        "kill": lambda: E.kill_latency(cycles=20 if quick else 100),
        "io": lambda: E.results_io(),
        "slots": lambda: E.slots_throughput(per_slot=3 if quick else 5),
        "slots_duty": lambda: E.slots_duty(per_slot=3 if quick else 4),
        "slots_overhead": lambda: E.slots_overhead(n=20 if quick else 40),
        "slurm": lambda: E.slurm_vs_local(per_slot=2 if quick else 3),
        "early_stop": lambda: C.early_stop(runs=200 if quick else 400),
        "first_frame": lambda: U.first_frame(repeat=3 if quick else 5),
        "idle": lambda: U.idle_cpu(),
        "flood": lambda: U.flood(),
        "table": lambda: U.table_load(),
        "keep": lambda: P.keep_decisions(sessions=500 if quick else 3000),
        "search": lambda: S.search_speed(seeds=30 if quick else 100),
    }
    rows = []
    t_all = time.time()
    for name, fn in suite.items():
        if names and name not in names:
            continue
        t0 = time.time()
        try:
            got = fn()
        except Exception as e:  # noqa: BLE001 - one broken benchmark does not hide the others
            got = [(name, float("nan"), "", "", False, f"failed: {type(e).__name__}: {e}"[:300])]
        rows.extend(got)
        print(f"  {name}: {time.time() - t0:.0f} s", file=sys.stderr)
    lines = ["| benchmark | value | goal | met | baseline / notes |", "|---|---|---|---|---|"]
    for name, value, unit, goal, ok, note in rows:
        v = f"{value:.3f}" if isinstance(value, float) and value < 10 else f"{value:,.1f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {v} {unit} | {goal} | {'yes' if ok else '**no**'} | {note} |")
    table = "\n".join(lines)
    command = " ".join(["python -m bench", *(["--quick"] if quick else []), *names])
    header = f"Machine: {machine()}. Date: {dt.date.today().isoformat()}. Run: `{command}` ({time.time() - t_all:.0f} s)."
    print(header)
    print(table)
    if write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text() if path.exists() else ""
        which = f":{','.join(names)}" if names else ""
        start, end = f"<!-- bench{which}:start -->", f"<!-- bench{which}:end -->"
        block = f"{start}\n{header}\n\n{table}\n{end}"
        if start in text and end in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text = text + "\n" + block + "\n"
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
