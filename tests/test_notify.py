"""Notifications through apprise, against real HTTP endpoints on 127.0.0.1 (apprise's `json://`
target posts the message as JSON): one that answers, one that is down."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomli_w
from conftest import TOY_TRAIN, cli, load_cfg, make_repo, run_engine, wait_until

from autoresearch_tui.config import ConfigError, load
from autoresearch_tui.engine import events as ev
from autoresearch_tui.engine.records import RunRecord
from autoresearch_tui.notify import Notifier, redact_url_parts
from test_engine_loop import ScriptedProposer

pytest.importorskip("apprise")

SECRET = "s3cretHookToken42"


class Inbox:
    """A webhook receiver on 127.0.0.1: every POST's JSON body, with its path and auth header."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.got: list[dict] = []
        inbox = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                time.sleep(delay_s)
                inbox.got.append({"path": self.path, "auth": self.headers.get("Authorization", ""), **body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"json://bot:{SECRET}@127.0.0.1:{self.port}/hook/{SECRET}"

    def bodies(self) -> list[str]:
        return [m.get("message", "") for m in self.got]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def down_url() -> str:
    """An endpoint that is down: a port nobody listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"json://127.0.0.1:{port}/down/{SECRET}"


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.close()


def _write_notify(root: Path, urls: list[str], on: list[str] | None = None) -> None:
    import tomllib

    path = root / "autoresearch.toml"
    data = tomllib.loads(path.read_text())
    data["notify"] = {"urls": urls, **({"on": on} if on is not None else {})}
    path.write_text(tomli_w.dumps(data))


def test_new_best_and_crash_streak_reach_the_endpoint_and_a_dead_one_is_a_notice(tmp_path, inbox):
    root = make_repo(tmp_path / "r", train=TOY_TRAIN + "\nif MODE != 'ok':\n    raise SystemExit(3)\n")
    _write_notify(root, [inbox.url(), down_url()])
    cfg = load(root / "autoresearch.toml")
    prop = ScriptedProposer([
        ("raise LR to 0.04", [("train.py", "LR = 0.01", "LR = 0.04")]),  # the best the toy can do in LR
        ("break it 1", [("train.py", 'MODE = "ok"', 'MODE = "b1"')]),
        ("break it 2", [("train.py", 'MODE = "ok"', 'MODE = "b2"')]),
        ("break it 3", [("train.py", 'MODE = "ok"', 'MODE = "b3"')]),
    ])
    eng, events = run_engine(cfg, proposer=prop, max_iterations=4)
    assert eng.notifier is not None
    assert eng.notifier.flush(20)
    statuses = [e.record.status for e in events if isinstance(e, ev.Decision)]
    assert statuses == ["keep", "keep", "crash", "crash", "crash"]  # the session went on past the dead endpoint
    bodies = inbox.bodies()
    assert len(bodies) == 3, bodies
    assert bodies[0] == "#1 new best val_bpb 2.034000 (−4.2%): raise LR to 0.04"
    assert bodies[1].startswith("3 crashes in a row (#2–#4)")
    assert bodies[2].startswith("session ended:") and "best val_bpb" in bodies[2] and "(#1)" in bodies[2]
    assert all(m["title"] == "autoresearch t1" for m in inbox.got)
    assert inbox.got[0]["path"] == f"/hook/{SECRET}" and inbox.got[0]["auth"].startswith("Basic ")
    # the dead endpoint: one warning (not one per message), naming it by number, never its URL
    fails = [e.text for e in events if isinstance(e, ev.Notice) and "notify" in e.text]
    assert len(fails) == 1 and fails[0].startswith("notify: sending the new_best message to #2 json://… failed"), fails
    assert all(SECRET not in e.text for e in events if isinstance(e, ev.Notice))
    for p in root.rglob("*"):
        if p.is_file() and ".git" not in p.parts:
            assert SECRET.encode() not in p.read_bytes() or p.name == "autoresearch.toml", p


def test_headless_cli_sends_the_session_end_before_exiting_and_never_prints_the_secret(tmp_path, inbox):
    root = make_repo(tmp_path / "r")
    slow = Inbox(delay_s=1.5)  # the first target answers slowly: the process must wait for the others
    try:
        _write_notify(root, [slow.url(), inbox.url(), down_url()], on=["session_end"])
        p = cli(root, "--headless", "--max-iterations", "1")
    finally:
        slow.close()
    assert p.returncode == 0, p.stderr
    assert len(inbox.got) == 1 and inbox.got[0]["message"].startswith("session ended: "), (inbox.got, slow.got, p.stdout[-1500:], p.stderr)  # flushed at exit
    assert "notify: sending the session_end message to #3 json://… failed" in p.stdout
    assert SECRET not in p.stdout + p.stderr


def test_what_apprise_says_about_a_url_is_redacted():
    url = f"slack://bot@{SECRET}/B0AAAA/{SECRET}x/#general"
    text = redact_url_parts(f"Failed to send to {url} (token {SECRET}x)", [url])
    assert SECRET not in text and "Failed to send to" in text


def _rec(n: int, status: str, metric: float | None, best_before: float | None = 1.0, crash: str = "") -> RunRecord:
    return RunRecord(n, status=status, description=f"exp {n}", metric=metric, best_before=best_before, crash_reason=crash)


def _notifier(inbox: Inbox, notices: list, **kw) -> Notifier:
    return Notifier([inbox.url()], ["new_best", "session_end", "crash_streak", "paused", "stalled"], "val_bpb", "minimize",
                    "t1", 60.0, lambda text, level: notices.append((level, text)), **kw)


def test_paused_and_stalled_messages_and_a_stall_is_said_once(inbox):
    notices: list = []
    n = _notifier(inbox, notices, stall_after_s=0.4)
    n(ev.SessionStarted("autoresearch/t1", "t1", "main", False, "val_bpb", "minimize", 0, 5.0))
    wait_until(lambda: len(inbox.got) >= 1, timeout=10, what="the stalled message")
    time.sleep(0.6)  # still stalled: not said again
    assert inbox.bodies() == [inbox.bodies()[0]] and inbox.bodies()[0].startswith("stalled: no experiment has finished")
    n(ev.Decision(_rec(5, "discard", 1.2), best=None, baseline=None))  # progress re-arms it
    n(ev.Notice("warning", "cost cap reached: $5.01 >= max_cost_usd $5.00; paused (raise the cap and resume with p)"))
    n(ev.PhaseChanged(ev.Phase.PAUSED, 6, paused=True))
    n(ev.PhaseChanged(ev.Phase.PAUSED, 6, paused=True))  # the same pause: one message
    time.sleep(0.8)  # paused: no stall while paused
    assert n.flush(10)
    assert inbox.bodies()[1:] == ["paused at #6: cost cap reached: $5.01 >= max_cost_usd $5.00; paused (raise the cap and resume with p)"]
    n.close()
    assert notices == []


def test_only_the_configured_events_are_sent(inbox):
    notices: list = []
    n = Notifier([inbox.url()], ["session_end"], "val_bpb", "minimize", "t1", 60.0, lambda t, lv: notices.append(t))
    best = _rec(2, "keep", 0.9)
    n(ev.Decision(best, best=best, baseline=None))
    for i in (3, 4, 5):
        n(ev.Decision(_rec(i, "crash", None, crash="boom"), best=best, baseline=None))
    n(ev.SessionEnded("stopped by the user"))
    assert n.flush(10)
    n.close()
    assert inbox.bodies() == ["session ended: stopped by the user; 4 experiments; best val_bpb 0.900000 (#2)"]


def test_notify_config_is_checked_without_printing_the_url(tmp_path):
    root = make_repo(tmp_path / "r")
    _write_notify(root, [f"not a url {SECRET}"])
    with pytest.raises(ConfigError) as e:
        load(root / "autoresearch.toml")
    assert "[notify] urls entry 1" in str(e.value) and SECRET not in str(e.value)
    _write_notify(root, ["ntfys://topic"], on=["new_best", "sometimes"])
    with pytest.raises(ConfigError, match="'sometimes'"):
        load(root / "autoresearch.toml")
    _write_notify(root, [f"nosuchservice://{SECRET}@host/x"])
    p = cli(root, "check")
    assert p.returncode == 2 and "[notify] urls entry #1 nosuchservice://… is not understood by apprise" in p.stderr
    assert SECRET not in p.stdout + p.stderr
    assert load_cfg(make_repo(tmp_path / "r2")).notify.urls == []
