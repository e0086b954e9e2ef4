"""Command line (DESIGN.md "CLI", a contract).

Exit codes: 0 success; 2 bad configuration, usage or repository state (one line naming the
file, the key and the fix, never a traceback); 1 an unexpected failure (traceback written to
`.autoresearch/`, a one-line pointer on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .config import CONFIG_NAME, Config, ConfigError, load
from .errors import EngineFailure, UsageError, write_crash


def _common(p: argparse.ArgumentParser, sub: bool) -> None:
    d = argparse.SUPPRESS if sub else None
    p.add_argument("--config", metavar="FILE", default=d, help=f"configuration file (default: ./{CONFIG_NAME})")
    p.add_argument("--headless", action="store_true", default=argparse.SUPPRESS if sub else False,
                   help="plain lines on stdout, no TUI (for nohup, CI, non-TTY)")
    p.add_argument("--max-iterations", metavar="N", type=int, default=d,
                   help="bound the session to N experiments (0 or absent: unbounded)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="autoresearch-tui",
        description="Run the autoresearch loop: propose, commit, run under a time budget, keep or revert.",
    )
    p.add_argument("--version", action="version", version=f"autoresearch-tui {__version__}")
    _common(p, sub=False)
    subs = p.add_subparsers(dest="cmd", metavar="{demo,check,summary,watch,serve}")
    demo = subs.add_parser("demo", help="copy the bundled example into DIR, then run it")
    demo.add_argument("dir", nargs="?", default="autoresearch-demo", metavar="DIR")
    demo.add_argument("--iterations", type=int, default=None, metavar="N", help="experiments to run (default: until stopped)")
    demo.add_argument("--budget", type=float, default=None, metavar="S", help="seconds of training per experiment (default 20)")
    _common(demo, sub=True)
    chk = subs.add_parser("check", help="preflight only: configuration, repository, files, command")
    _common(chk, sub=True)
    summ = subs.add_parser("summary", help="write and print autoresearch-summary.md from the results")
    summ.add_argument("--plot", action="store_true", help="also write progress.png (needs matplotlib)")
    _common(summ, sub=True)
    watch = subs.add_parser("watch", help="the main screen on a session another process runs (read-only, no lock)")
    _common(watch, sub=True)
    serve = subs.add_parser("serve", help="watch in a browser (textual-serve), behind a token")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: use an SSH tunnel)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--token", default=None, help="the token the page needs (default: $AUTORESEARCH_SERVE_TOKEN, else a random one, printed)")
    _common(serve, sub=True)
    return p


def _config_path(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "config", None) or CONFIG_NAME)


def _load(args: argparse.Namespace) -> Config:
    path = _config_path(args)
    cfg = load(path)
    if args.max_iterations is not None:
        if args.max_iterations < 0:
            raise UsageError("--max-iterations must be 0 (unbounded) or more")
        cfg.research.max_iterations = args.max_iterations
    return cfg


def cmd_check(args: argparse.Namespace) -> int:
    from .engine.preflight import preflight

    cfg = _load(args)
    rep = preflight(cfg)
    for line in rep.info:
        print(f"ok: {line}")
    for line in rep.warnings:
        print(f"warning: {line}")
    from .notify import problems

    notify_errors = problems(cfg)
    for line in rep.errors + notify_errors:
        print(f"error: {line}", file=sys.stderr)
    if rep.ok and not notify_errors:
        print(f"ok: {cfg.path} is valid; command: {cfg.research.command}; metric {cfg.metric.name} ({cfg.metric.direction})")
        return 0
    return 2


def cmd_summary(args: argparse.Namespace) -> int:
    from .engine.paths import Paths
    from .engine.records import History
    from .engine.results import ResultsStore
    from .summary import write_summary

    cfg = _load(args)
    store = ResultsStore(cfg.root, cfg.research.results_file, cfg.metric.name)
    loaded = store.load(repair=False)
    if not loaded.records:
        raise UsageError(f"{cfg.research.results_file}: no experiments recorded yet; run a session first")
    history = History.from_dicts(loaded.records, loaded.events, cfg.metric.direction)
    cost = sum(r.cost_usd for r in history)
    platform = {}
    try:
        import json

        platform = json.loads(Paths(cfg.root).platform_cache.read_text())
    except (OSError, ValueError):
        pass
    path, text = write_summary(cfg, history, platform, cost)
    print(text)
    if args.plot:
        from .plot import write_plot

        png = write_plot(cfg, history)
        print(f"plot: {png}")
    print(f"written: {path}", file=sys.stderr)
    return 0


def _finish(run: Callable[[], str]) -> tuple[str, int]:
    """Run a session; (why it ended, exit code): 2 with one line for what the user can fix,
    1 with a pointer to the crash log for an engine that died of a bug."""
    from .engine.setup import SetupError

    try:
        return run(), 0
    except SetupError as e:
        print(f"autoresearch-tui: {e}", file=sys.stderr)
        return "", 2
    except EngineFailure as e:
        print(f"autoresearch-tui: unexpected error ({e}); details in {e.crash_log}", file=sys.stderr)
        return "", 1


def run_session(cfg: Config, headless: bool) -> int:
    from .launch import new_session

    if not headless and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print("autoresearch-tui: not a terminal; running headless", file=sys.stderr)
        headless = True
    engine = new_session(cfg)
    if headless:
        from .headless import run_headless

        reason, code = _finish(lambda: run_headless(engine))
    else:
        from .ui.app import run_app

        reason, code = _finish(lambda: run_app(cfg, engine=engine))
    notifier = getattr(engine, "notifier", None)
    if notifier is not None:
        notifier.close()  # the session's last messages (its end) go out before the process exits
    if reason.startswith("the baseline run crashed"):
        print(f"autoresearch-tui: {reason}", file=sys.stderr)
        return 2
    return code


def cmd_run(args: argparse.Namespace) -> int:
    path = _config_path(args)
    interactive = not args.headless and sys.stdout.isatty() and sys.stdin.isatty()
    if not path.exists():
        from .engine.preflight import repository_problem
        from .engine.repoinit import is_repository

        # before the wizard writes a file or a folder: a session could not start here anyway
        # (a folder that is no repository at all: the wizard offers git init, and exits 2 without)
        problem = repository_problem(path.resolve().parent)
        if problem and not (interactive and not is_repository(path.resolve().parent)):
            raise UsageError(problem)
    if not path.exists() and interactive:
        from .ui.app import run_app

        return _finish(lambda: run_app(None, config_path=path, max_iterations=args.max_iterations))[1]
    cfg = _load(args)
    return run_session(cfg, args.headless)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import prepare_demo

    cfg, resumed = prepare_demo(Path(args.dir), iterations=args.iterations, budget=args.budget)
    if getattr(args, "max_iterations", None) is not None:
        cfg.research.max_iterations = args.max_iterations
    if resumed:
        print(f"demo: resuming the demo in {cfg.root}", file=sys.stderr)
    else:
        print(f"demo: example copied to {cfg.root} (a git repository); starting the session", file=sys.stderr)
    os.chdir(cfg.root)
    return run_session(cfg, getattr(args, "headless", False))


def cmd_watch(args: argparse.Namespace) -> int:
    cfg = load(_config_path(args))
    served = bool(os.environ.get("TEXTUAL_DRIVER"))  # under `serve`: textual-serve's web driver, over pipes
    if args.headless or not (served or (sys.stdout.isatty() and sys.stdin.isatty())):
        import asyncio

        from .follow import Follower
        from .headless import HeadlessPrinter

        follower = Follower(cfg)
        follower.subscribe(HeadlessPrinter(follower))  # type: ignore[arg-type]
        try:
            asyncio.run(follower.run())
        except KeyboardInterrupt:
            pass
        return 0
    from .ui.app import run_watch

    run_watch(cfg)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    path = _config_path(args)
    load(path)  # a broken configuration is said here, not in the browser
    token = args.token or os.environ.get("AUTORESEARCH_SERVE_TOKEN") or None
    return serve(path, args.host, args.port, token)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "max_iterations"):
        args.max_iterations = None
    try:
        if args.cmd == "check":
            return cmd_check(args)
        if args.cmd == "summary":
            return cmd_summary(args)
        if args.cmd == "demo":
            return cmd_demo(args)
        if args.cmd == "watch":
            return cmd_watch(args)
        if args.cmd == "serve":
            return cmd_serve(args)
        return cmd_run(args)
    except (ConfigError, UsageError) as e:
        print(f"autoresearch-tui: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autoresearch-tui: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback on screen
        where = write_crash(e)
        print(f"autoresearch-tui: unexpected error ({type(e).__name__}: {e}); details in {where}", file=sys.stderr)
        return 1
