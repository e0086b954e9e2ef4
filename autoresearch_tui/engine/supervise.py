"""The supervisor a Slurm job runs its command under (`python -m autoresearch_tui.engine.supervise`).

It gives a job the guarantees of a local run, on the node itself: the command runs in its own
session with the run marker, the budget in its environment and its output in the experiment's
log; at the timeout (or on SIGTERM, e.g. `scancel`) the whole tree is killed — process groups,
`setsid` workers and marked daemons, SIGKILL after the grace period — because Slurm's own
cancel leaves such processes running where it tracks processes without cgroups. The outcome is
written as JSON to the exit file, next to the log, for the app to read (also after a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import runner
from ..fsio import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="autoresearch-supervise")
    ap.add_argument("--log", required=True)
    ap.add_argument("--exit", required=True)
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--timeout", type=float, required=True)
    ap.add_argument("--grace", type=float, default=10.0)
    ap.add_argument("command")
    a = ap.parse_args(argv)
    return asyncio.run(_supervise(a))


async def _supervise(a: argparse.Namespace) -> int:
    runner.become_subreaper()
    kill = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, kill.set)
    exit_path = Path(a.exit)
    log = Path(a.log)
    started = time.time()
    handle = runner.start(a.command, Path.cwd(), log, exit_path.with_name(exit_path.name + ".sh"), a.budget)
    outcome = await runner.wait(handle, a.timeout, a.grace, kill, poll_s=0.1)
    data = {**asdict(outcome), "started_at": started, "node": os.uname().nodename, "job_id": os.environ.get("SLURM_JOB_ID", "")}
    if kill.is_set() and not outcome.timed_out:
        data["reason"] = "cancelled (SIGTERM to the job: scancel, preemption or the node going down)"
    atomic_write_text(exit_path, json.dumps(data))
    return 0 if outcome.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
