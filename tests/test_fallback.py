"""The GPU never waits on a failing model: the fallback proposer, transcripts, model health, stop.

Every test talks HTTP to the scripted OpenAI-compatible server on 127.0.0.1 (`llm_server`) and
runs the real engine on a temporary git repository; runs that must be "going" wait at a Gate.
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
from conftest import TEST_PLATFORM, TOY_TRAIN, Gate, git, jsonl_runs, load_cfg, make_repo, tsv_rows, until
from llm_server import ScriptedLLM, edit

from autoresearch_tui.engine import events as ev
from autoresearch_tui.headless import HeadlessPrinter
from autoresearch_tui.launch import new_session
from autoresearch_tui.proposers.llm import LLMProposer

SENTINEL = "sk-SENTINEL-42b9e0d7c1a3"
PROSE = {"content": "Great question! I would try increasing the learning rate a little, it often helps."}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)


def _root(tmp_path, srv, train=TOY_TRAIN, research=None, **proposer):
    return make_repo(tmp_path / "r", train=train, research=research,
                     proposer={"kind": "llm", "model": "openai/test-model", "api_base": srv.base, "request_timeout_s": 5,
                               "max_attempts": 3, **proposer})


def _session(root, n):
    cfg = load_cfg(root)
    prop = LLMProposer(cfg)
    prop.backoff_base = 0.01  # the proposer's own retries (429, 5xx)
    eng = new_session(cfg, proposer=prop, max_iterations=n, platform=dict(TEST_PLATFORM), poll_s=0.02)
    eng.gate.backoff_base_s = 0.01  # the model's rest after a failed round
    events: list = []
    eng.subscribe(events.append)
    return eng, events


def _run(root, n):
    eng, events = _session(root, n)
    asyncio.run(eng.run())
    return eng, events


def _drive(eng, driver):
    async def main():
        task = asyncio.create_task(eng.run())
        try:
            result = await driver()
        except BaseException:
            eng.stop_now()
            await asyncio.wait_for(task, 60)
            raise
        await asyncio.wait_for(task, 60)
        return result

    return asyncio.run(main())


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_a_model_that_answers_only_prose_never_stops_the_loop(tmp_path):
    # every answer is prose (no edit): each round fails, and every experiment comes from the fallback
    with ScriptedLLM([PROSE]) as srv:
        root = _root(tmp_path, srv, repair_rounds=0)
        eng, events = _run(root, 4)
    recs = jsonl_runs(root)
    assert len(recs) == 5 and eng.end_reason == "reached max_iterations (4)"
    for r in recs[1:]:
        assert r["proposer"] == "mutate (fallback)" and r["description"].endswith("(fallback)"), r
        assert r["fallback"]  # why: the model's answer was rejected / it rests
    assert all(row["description"].endswith("(fallback)") for row in tsv_rows(root)[1:])  # results.tsv says so too
    # the model was asked all along (one answer per round, the rests were short) and never ran
    assert len(srv.requests) >= 3
    assert all("DESCRIPTION" not in git(root, "show", "-s", "--format=%B", r["commit"]) for r in recs[1:])
    # one notice (not one per round) says what to fix: the model, the server address, the key
    fix = [e.text for e in of(events, ev.Notice) if "rounds in a row" in e.text]
    assert len(fix) == 1, fix
    assert "openai/test-model" in fix[0] and srv.base in fix[0] and "OPENAI_API_KEY (set" in fix[0]
    assert "not with usable edits" in fix[0] and SENTINEL not in fix[0]
    health = of(events, ev.ModelHealth)[-1]
    assert health.fallbacks == health.proposals == 4 and health.failed_in_row >= 3 and "no edits" in health.last_error
    # the summary counts it
    summary = (root / "autoresearch-summary.md").read_text()
    assert "- Fallbacks: 4 (100% of the experiments)" in summary and "- Acceptance: 0 of " in summary


@pytest.mark.parametrize("reply,likely", [
    ({"status": 401, "body": "invalid api key"}, "the server refused the key: check OPENAI_API_KEY"),
    ({"status": 404, "body": "model not found"}, "answers 'not found': check [proposer] model 'openai/test-model'"),
    (None, "nothing answers at http://127.0.0.1:"),  # no server at api_base
])
def test_the_notice_after_failed_rounds_says_what_to_fix(tmp_path, reply, likely):
    with ScriptedLLM([reply or PROSE]) as srv:
        root = _root(tmp_path, srv, max_attempts=1)  # every request fails at once: one failed round per experiment
        if reply is None:
            srv.server.server_close()  # the port is closed: connection refused
        _, events = _run(root, 4)
    fix = [e.text for e in of(events, ev.Notice) if "rounds in a row" in e.text]
    assert len(fix) == 1 and likely in fix[0], fix
    assert [r["proposer"] for r in jsonl_runs(root)[1:]] == ["mutate (fallback)"] * 4


def test_rejected_answer_goes_back_to_the_model_while_the_fallback_runs_and_transcripts_link_it(tmp_path):
    replies = [{"content": f"I cannot edit files. (my key is {SENTINEL})"},  # rejected: no edits
               edit("deeper model", "DEPTH = 2", "DEPTH = 3")]  # the repair, asked with the reason
    with ScriptedLLM(replies) as srv:
        root = _root(tmp_path, srv)
        eng, events = _run(root, 2)
    recs = jsonl_runs(root)
    fb, llm = recs[1], recs[2]
    assert fb["proposer"] == "mutate (fallback)" and "rejected" in fb["fallback"]
    assert llm["proposer"] == "llm" and llm["description"] == "deeper model" and llm["attempts"] == 2
    # the repair round carried the reason, and was prepared while the fallback ran
    assert "Your previous answer was rejected" in srv.requests[1]["messages"][1]["content"]
    # transcripts: the rejected answer (linked from both records) and the accepted one, redacted
    assert fb["transcripts"] == llm["transcripts"][:1] and len(llm["transcripts"]) == 2
    rejected, accepted = [(root / p).read_text() for p in llm["transcripts"]]
    assert "- outcome: rejected" in rejected and "contains no edits" in rejected and "I cannot edit files" in rejected
    assert "- outcome: accepted" in accepted and "DEPTH = 3" in accepted and "## Prompt: user" in accepted
    for path in root.rglob("*"):
        if path.is_file():
            assert SENTINEL not in path.read_bytes().decode(errors="replace"), path
    # the diff view says who proposed it and why; `a` shows the raw answers, the rejected one first
    rec = eng.history.get(llm["iteration"])
    detail = eng.experiment_detail(rec)
    assert "proposed by: llm (answer 2: after 1 rejected)" in detail and "hypothesis: it should help" in detail
    answers = eng.experiment_answers(rec)
    assert answers.index("I cannot edit files") < answers.index("DEPTH = 3")
    assert "answer 1 of 2: rejected — the answer contains no edits" in answers
    assert "proposed by: mutate (fallback)" in eng.experiment_detail(eng.history.get(fb["iteration"]))
    summary = (root / "autoresearch-summary.md").read_text()
    assert "- Acceptance: 1 of 2 model answers became experiments (50%)" in summary
    assert "- Repair rounds: 1 " in summary and "- Fallbacks: 1 (50% of the experiments)" in summary


def test_first_queued_idea_is_what_the_next_experiment_tries_after_failed_rounds(tmp_path):
    # a NAME=VALUE idea: the fallback runs it when the model fails; a free-text idea stays first in
    # line for the model, whose next answer is asked for it
    replies = [PROSE, PROSE, edit("deeper as asked", "DEPTH = 2", "DEPTH = 3")]
    with ScriptedLLM(replies) as srv:
        root = _root(tmp_path, srv, repair_rounds=0, pipeline=False)
        (root / "autoresearch.md").write_text("## Backlog\n\n- [ ] WIDTH=48\n- [ ] try a deeper model\n- [ ] use dropout\n")
        _run(root, 3)
    recs = jsonl_runs(root)
    assert recs[1]["idea"] == "WIDTH=48" and recs[1]["proposer"] == "mutate (fallback)"
    assert "WIDTH 32 -> 48" in recs[1]["description"]
    assert recs[2]["proposer"] == "mutate (fallback)" and not recs[2].get("idea")  # free text: not the fallback's
    assert recs[3]["idea"] == "try a deeper model" and recs[3]["proposer"] == "llm"
    for req in srv.requests[1:]:  # every request after the first idea ran asked for the next one in line
        assert "this experiment MUST implement it\ntry a deeper model" in req["messages"][1]["content"]


def test_retried_request_is_not_waited_for_and_a_timed_out_one_is_not_sent_again(tmp_path):
    gate = Gate(tmp_path / "gate")
    # the prepared request: a 429 (retried, reported), then an answer that never comes in time
    replies = [{"status": 429, "body": "slow down"}, {"delay": 30, **edit("late", "WIDTH = 32", "WIDTH = 48")}]
    with ScriptedLLM(replies) as srv:
        root = _root(tmp_path, srv, train=gate.script(), research={"time_budget_s": 120}, request_timeout_s=4)
        eng, events = _session(root, 2)

        async def driver():
            await until(lambda: of(events, ev.ModelActivity) and len(srv.requests) == 2, 60, "the retry of the 429")
            asked = time.monotonic()
            gate.release(0)  # the baseline ends while the prepared request is being retried
            await until(lambda: gate.arrived() >= 2, 30, "experiment #1 to start")
            waited = time.monotonic() - asked
            await asyncio.sleep(max(0.0, asked + 4.5 - time.monotonic()))  # the retried request has timed out now
            gate.open()
            return waited

        waited = _drive(eng, driver)
    activity = of(events, ev.ModelActivity)[0].text
    assert "attempt 1/3 failed" in activity and "RateLimit" in activity and "retrying in" in activity
    assert waited < 3  # the slot took the fallback at once: it did not wait for the retried request (4 s)
    recs = jsonl_runs(root)
    assert [r["proposer"] for r in recs[1:]] == ["mutate (fallback)"] * 2
    assert "being retried" in recs[1]["fallback"]
    failed = of(events, ev.ProposalFailed)
    assert len(failed) == 1 and "no answer within 4 s" in failed[0].reason and "not retried" in failed[0].reason
    assert "the model failed (no answer within 4 s" in recs[2]["fallback"]
    assert len(srv.requests) == 2  # the request that timed out was not sent again (max_attempts = 3)
    # the retry and the timeout are in the headless output and in runs.jsonl, not a silent gap
    out = io.StringIO()
    printer = HeadlessPrinter(eng, out)
    for e in events:
        printer(e)
    text = out.getvalue()
    assert "model: attempt 1/3 failed (RateLimitError" in text and "#2 proposal failed: no answer within 4 s" in text
    assert "(fallback)  [the model's request is being retried" in text
    # the timeout of the prepared request was told when it happened, while #1 ran, not when #2 took it
    told = [i for i, e in enumerate(events) if isinstance(e, ev.ModelActivity) and "prepared for the next experiment failed" in e.text]
    ended = [i for i, e in enumerate(events) if isinstance(e, ev.RunFinished) and e.iteration == 1]
    assert told and told[0] < ended[0] and "model: the request prepared for the next experiment failed: no answer within 4 s" in text
    retries = [json.loads(ln) for ln in (root / ".autoresearch" / "runs.jsonl").read_text().splitlines() if '"model_retry"' in ln]
    assert len(retries) == 1 and "retrying in" in retries[0]["text"]


def test_stop_cancels_in_flight_model_requests_at_once_with_several_slots(tmp_path):
    with ScriptedLLM([{"delay": 60, **edit("slow", "WIDTH = 32", "WIDTH = 48")}]) as srv:
        root = _root(tmp_path, srv, request_timeout_s=120)
        with open(root / "autoresearch.toml", "a") as f:
            f.write('\n[compute]\nslots = 2\ngpus = ["0", "1"]\n')
        eng, events = _session(root, 4)

        async def driver():
            # both slots wait on the model (one on the prepared request, one on its own)
            await until(lambda: len(srv.requests) >= 2 and all(s.state == "proposing" for s in eng.slots), 60,
                        lambda: f"two requests in flight (requests {len(srv.requests)}, slots {[s.state for s in eng.slots]})")
            t0 = time.monotonic()
            eng.stop_now()
            await until(lambda: eng.phase == ev.Phase.STOPPED, 60, "the session to stop")
            return time.monotonic() - t0

        took = _drive(eng, driver)
    assert took < 5, took  # not the 60 s the server takes
    assert [e.iteration for e in of(events, ev.RunStarted)] == [0]  # nothing started after the stop
    assert eng.end_reason == "stopped by the user"


def test_without_a_fallback_the_loop_waits_for_the_model(tmp_path):
    with ScriptedLLM([PROSE, PROSE, PROSE, edit("w", "WIDTH = 32", "WIDTH = 48")]) as srv:
        root = _root(tmp_path, srv, fallback="none")
        _run(root, 1)
    recs = jsonl_runs(root)
    assert [r["proposer"] for r in recs[1:]] == ["llm"] and len(srv.requests) == 4
    assert recs[1]["attempts"] == 1 and len(recs[1]["transcripts"]) == 1  # a new round: its own answer only


async def test_tui_marks_fallback_rows_shows_model_health_and_the_raw_answers(tmp_path, monkeypatch):
    from autoresearch_tui.ui.app import AutoresearchApp
    from autoresearch_tui.ui.screens.modals import ExperimentScreen, TextScreen
    from autoresearch_tui.ui.widgets.results import ResultsTable
    from autoresearch_tui.ui.widgets.status import StatusBar

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with ScriptedLLM([PROSE]) as srv:
        root = _root(tmp_path, srv, repair_rounds=0)
        eng, events = _session(root, 2)
        app = AutoresearchApp(load_cfg(root), engine=eng)
        async with app.run_test(size=(160, 40)) as pilot:
            async def wait(cond, what):
                end = time.monotonic() + 60
                while not cond():
                    assert time.monotonic() < end, f"timed out waiting for {what}"
                    await pilot.pause(0.05)

            table = app.main.query_one(ResultsTable)
            await wait(lambda: eng.phase == ev.Phase.STOPPED and len(table.records) == 3, "2 experiments on screen")
            cell = table.get_cell("1", "desc")
            assert str(cell).endswith("(fallback)") and "italic" in str(cell.style)
            status = app.main.query_one(StatusBar).query_one("#status-text").text.plain
            assert "model ✗ 2 failed (last: 1 proposals rejected" in status and "fallback 100%" in status
            table.focus()
            table.move_cursor(row=1)
            await pilot.press("enter")
            await wait(lambda: isinstance(app.screen, ExperimentScreen), "the diff view")
            await wait(lambda: "proposed by: mutate (fallback)" in str(app.screen.query_one("#text-body").render()), "the facts")
            await pilot.press("a")
            await wait(lambda: type(app.screen) is TextScreen, "the answers")
            await wait(lambda: "Great question!" in str(app.screen.query_one("#text-body").render()), "the raw answer")
            assert "rejected — the answer contains no edits" in str(app.screen.query_one("#text-body").render())
            app.exit()
