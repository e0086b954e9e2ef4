"""The main screen: status, live log, results, sparkline, git log, backlog — and the keys."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Input

from ...config import Config
from ...engine import events as ev
from ...engine.ledger import GitError
from ...engine.records import History
from ...eventtext import format_event
from ..messages import EngineEvent
from ..widgets.backlog import BacklogPane
from ..widgets.chart import MetricChart
from ..widgets.curve import CurvePane
from ..widgets.gitlog import GitLogPane
from ..widgets.keybar import KeyBar
from ..widgets.logview import LogPane
from ..widgets.results import ResultsTable
from ..widgets.slots import SlotsPane
from ..widgets.status import StatusBar
from .modals import ConfirmScreen, ExperimentScreen, QuitScreen, TextScreen


# what each key does, in words (the key bar's descriptions are one word)
HELP_TEXT = {
    "pause": "pause: the running experiment finishes, no new one starts",
    "resume": "resume",
    "stop": "stop after the running experiment",
    "kill": "kill the running experiment (the selected slot's; asks first; recorded as crash)",
    "slot": "several slots: the next slot (0-9 pick one); the log follows it, x kills its run",
    "keep": "override: keep the selected experiment (re-applies a discarded one)",
    "discard": "override: discard the selected experiment",
    "diff": "show the selected experiment's diff and log (there c copies the diff, a shows the model's answers)",
    "copy": "copy the selected experiment's commit hash (OSC 52 clipboard)",
    "restart": "after the session ended: start a new one on the same configuration (it resumes)",
    "idea": "type an idea for the next iteration",
    "theme": "choose a theme",
    "chart": "the metric chart, full screen",
    "curve": "the followed run's loss curve against the best's and the baseline's, full screen",
    "help": "this help",
    "quit": "quit (asks when an experiment runs)",
    "follow": "follow the end of the run log",
    "leave": "leave the idea input / close this help",
}


def shown_by_status(e: ev.Notice) -> bool:
    """A notice that only repeats what the status bar shows (the PAUSED badge after the pause key,
    the phase after resume): not toasted. Paused by the cost cap is a warning and says why: toasted."""
    return e.level == "info" and (e.text == "resumed" or e.text.startswith("paused:"))


class MainScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause", id="pause"),
        Binding("p", "resume", "Resume", id="resume"),
        Binding("s", "stop", "Stop after run", id="stop"),
        Binding("x", "kill", "Kill run", id="kill"),
        Binding("k", "keep", "Keep", id="keep"),
        Binding("d", "discard", "Discard", id="discard"),
        Binding("enter", "show_diff", "Diff", id="diff", show=False),
        Binding("c", "copy_commit", "Copy hash", id="copy", show=False),
        Binding("r", "restart", "Restart", id="restart"),
        Binding("i", "focus_idea", "Idea", id="idea"),
        Binding("t", "pick_theme", "Theme", id="theme"),
        Binding("g", "chart", "Chart", id="chart"),
        Binding("v", "curve", "Curve", id="curve", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("end", "follow_log", "Follow log", id="follow", show=False),
        Binding("tab", "next_slot", "Next slot", id="slot", show=False),
        Binding("escape", "leave_input", "Back", id="leave", show=False),
    ]

    paused: reactive[bool] = reactive(False, bindings=True)
    running: reactive[bool] = reactive(False, bindings=True)
    stopping: reactive[bool] = reactive(False, bindings=True)
    selection: reactive[str] = reactive("", bindings=True)  # status of the selected row
    ended: reactive[bool] = reactive(False, bindings=True)  # the session has ended (r starts a new one)

    #: keys that steer a live session: not offered (key bar, help) once it has ended
    LIVE_ONLY = ("pause", "resume", "stop", "kill")
    #: keys that change the session: absent when watching it from outside (`watch`, `serve`)
    CHANGES_SESSION = ("pause", "resume", "stop", "kill", "keep", "discard", "restart", "idea")

    def __init__(self, session: Any, cfg: Config, clock: Callable[[], float] = time.time, live_git: bool = True,
                 watching: bool = False) -> None:
        super().__init__()
        self.watching = watching  # a Follower: the session runs in another process; nothing here changes it
        self.session = session  # commands and queries only: the screen follows the session's events
        self.cfg = cfg
        self.clock = clock
        self.live_git = live_git  # False in snapshot tests (frozen data)
        self.current_iteration: int | None = None
        self.current_description = ""

    # ---------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield StatusBar(clock=self.clock, id="status")
        yield SlotsPane(self.cfg.metric.name, clock=self.clock, id="slots")
        with Horizontal(id="top"):
            yield LogPane(clock=self.clock, id="logpane")
            with Vertical(id="side"):
                yield MetricChart(id="chart")
                yield CurvePane(id="curve")
                yield GitLogPane("(git log)", id="gitlog")
                yield BacklogPane(id="backlog")
        yield ResultsTable(id="results")
        yield KeyBar()

    def on_mount(self) -> None:
        cfg = self.cfg
        status = self.query_one(StatusBar)
        status.branch, status.metric, status.direction = cfg.branch, cfg.metric.name, cfg.metric.direction
        status.max_iterations = cfg.research.max_iterations
        self.query_one(MetricChart).set_direction(cfg.metric.direction)
        self.query_one("#chart").border_title = f"{cfg.metric.name} ({cfg.metric.direction})"
        self.query_one("#logpane").border_title = "run log"
        self.query_one("#gitlog").border_title = f"git log {cfg.branch}"
        self.query_one("#curve").border_title = "loss vs best (v: larger)"
        self.query_one("#backlog").border_title = "backlog"
        self.query_one("#idea-input", Input).placeholder = self.session.idea_format
        self.query_one(SlotsPane).display = False
        if self.watching:
            self.query_one("#idea-input", Input).display = False
            self.query_one("#logpane").border_title = "run log (watching)"
        self.query_one(LogPane).on_output = status.saw_output
        self.query_one(ResultsTable).focus()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < 32, "-compact")

    # ---------------------------------------------------------------- events
    @on(EngineEvent)
    def on_engine_event(self, message: EngineEvent) -> None:
        self.apply(message.event)

    def apply(self, e: ev.Event) -> None:
        status = self.query_one(StatusBar)
        table = self.query_one(ResultsTable)
        if isinstance(e, ev.SessionStarted):
            status.platform = e.platform.get("summary", "")
            status.max_iterations = e.max_iterations
            self.refresh_git_log()
        elif isinstance(e, ev.PlatformDetected):
            status.platform = e.platform.get("summary", "")
        elif isinstance(e, ev.HistoryLoaded):
            table.load(e.records)
            self.query_one(MetricChart).load(History(e.records, direction=self.cfg.metric.direction))
            status.set_best(e.best, e.baseline)
            status.iteration = len(e.records)
            self._update_selection()
        elif isinstance(e, ev.PhaseChanged):
            status.phase, status.detail, status.iteration = e.phase, e.detail, e.iteration
            self.paused = e.paused
            status.paused = self.paused
            self.stopping = e.stopping
            if self.parallel:
                status.detail = self._slots_summary()
        elif isinstance(e, ev.SlotsChanged):
            pane = self.query_one(SlotsPane)
            pane.set_slots(e.slots)
            if self.parallel:
                self.running = pane.running() > 0
                status.run_start, status.detail = None, self._slots_summary()
        elif isinstance(e, ev.CurveUpdated):
            self.query_one(CurvePane).update_curve(e)
        elif isinstance(e, ev.RunStarted):
            self.running = True
            if not self.parallel or e.slot == self.query_one(SlotsPane).selected:
                self.query_one(CurvePane).show(e.iteration)
                self.current_iteration, self.current_description = e.iteration, e.description
                self.query_one(LogPane).follow(e.log_path, f"#{e.iteration} {e.description} — {e.commit[:7]}")
            if not self.parallel:
                status.run_start, status.budget, status.timeout = e.started_at, e.time_budget_s, e.timeout_s
            self.refresh_git_log()
        elif isinstance(e, ev.RunFinished):
            if not self.parallel:
                self.running = False
                status.run_start = None
        elif isinstance(e, ev.Decision):
            table.upsert(e.record)
            status.session_done = e.session_done
            status.noise = e.record.noise or status.noise
            self.query_one(MetricChart).add(e.record, e.best.metric if e.best else None)
            status.set_best(e.best, e.baseline)
            self.refresh_git_log()
            self._update_selection()
        elif isinstance(e, ev.OverrideApplied):
            table.upsert(e.record, scroll=False)
            self.refresh_git_log()
            self._update_selection()
        elif isinstance(e, ev.BacklogChanged):
            self.query_one(BacklogPane).set_ideas(e.ideas)
        elif isinstance(e, ev.CostUpdated):
            status.cost, status.tokens = e.total_usd, e.total_tokens
        elif isinstance(e, ev.ModelHealth):
            status.health = e
        elif isinstance(e, ev.ModelActivity):
            self.app.notify(format_event(e, self.cfg.metric.name) or "", severity="warning", timeout=6, markup=False)
        elif isinstance(e, ev.ProgressReport):
            pass  # the status bar shows the iteration and the best vs the baseline; the table the counts
        elif isinstance(e, ev.Notice):
            if not shown_by_status(e):
                severity = {"warning": "warning", "error": "error"}.get(e.level, "information")
                self.app.notify(e.text, severity=severity, timeout=8 if e.level == "info" else 15, markup=False)
        elif isinstance(e, (ev.ProposalRejected, ev.ProposalFailed)):
            self.app.notify(format_event(e, self.cfg.metric.name) or "", severity="warning", timeout=6)
        elif isinstance(e, ev.SessionEnded):
            self.running = False
            self.ended = True
            self.paused = self.stopping = False
            status.paused = False
            self.app.notify(format_event(e, self.cfg.metric.name) or "session ended", title="session ended", timeout=30)
        status.refresh_status()

    # ---------------------------------------------------------------- slots
    @property
    def parallel(self) -> bool:
        return len(self.query_one(SlotsPane).slots) > 1

    def _slots_summary(self) -> str:
        pane = self.query_one(SlotsPane)
        queued = sum(1 for s in pane.slots if s.state == "queued")
        return f"{pane.running()} of {len(pane.slots)} slots running" + (f", {queued} queued (Slurm)" if queued else "")

    def select_slot(self, index: int) -> None:
        pane = self.query_one(SlotsPane)
        if not self.parallel or not 0 <= index < len(pane.slots):
            return
        pane.select(index)
        s = pane.current
        if s is not None and s.log_path:
            self.query_one(CurvePane).show(s.iteration)
            self.current_iteration, self.current_description = s.iteration, s.description
            self.query_one(LogPane).follow(s.log_path, f"slot {s.index}: #{s.iteration} {s.description}")

    def action_next_slot(self) -> None:
        pane = self.query_one(SlotsPane)
        self.select_slot((pane.selected + 1) % max(1, len(pane.slots)))

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character.isdigit() and self.parallel and not isinstance(self.focused, Input):
            self.select_slot(int(event.character))
            event.stop()

    def refresh_git_log(self) -> None:
        if self.live_git:
            self._read_git_log()

    @work(exclusive=True, group="gitlog", thread=True)
    def _read_git_log(self) -> None:
        entries = self.session.git_log(25)
        try:
            self.app.call_from_thread(self._set_git_log, entries)
        except RuntimeError:
            pass  # the app closed meanwhile

    def _set_git_log(self, entries: list[tuple[str, str]]) -> None:
        for pane in self.query(GitLogPane):
            pane.set_log(entries)

    # ------------------------------------------------------------ selection
    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._update_selection()

    def _update_selection(self) -> None:
        rec = self.query_one(ResultsTable).selected()
        if rec is None:
            self.selection = ""
        elif not rec.is_experiment:
            self.selection = "fixed"
        else:
            self.selection = rec.status

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.watching and action in self._watch_hidden_actions():
            return False
        if action == "restart":
            return self.ended
        if action in self.LIVE_ONLY and self.ended:
            return False
        if action == "copy":
            return True if self.selection else None
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        if action == "keep":
            return True if self.selection == "discard" else None
        if action == "discard":
            return True if self.selection == "keep" else None
        if action == "kill":
            return True if self.running else None
        if action == "stop":
            return None if self.stopping else True
        if action == "next_slot":
            return self.parallel
        return True

    def _watch_hidden_actions(self) -> set[str]:
        return {b.action for b in self.BINDINGS if isinstance(b, Binding) and b.id in self.CHANGES_SESSION} | {"sweep"}

    # -------------------------------------------------------------- actions
    def action_pause(self) -> None:
        self.session.pause()
        self.paused = True
        self.query_one(StatusBar).paused = True

    def action_resume(self) -> None:
        self.session.resume()
        self.paused = False
        self.query_one(StatusBar).paused = False

    def action_stop(self) -> None:
        # no notice: the status bar says STOPPING "stops after the current run"
        self.session.stop_after_run()
        self.stopping = True

    def action_restart(self) -> None:
        if self.ended:
            app: Any = self.app
            app.restart_session()

    def attach(self, session: Any) -> None:
        """Follow a new session (a restart after the last one ended): its events come next."""
        self.session = session
        self.ended = self.running = self.paused = self.stopping = False
        status = self.query_one(StatusBar)
        status.paused, status.session_done, status.session_start = False, 0, self.clock()
        status.phase, status.detail = "starting", ""
        status.refresh_status()

    def action_copy_commit(self) -> None:
        rec = self.query_one(ResultsTable).selected()
        if rec is None or not rec.commit:
            return
        self.app.copy_to_clipboard(rec.commit)
        self.app.notify(f"copied {rec.commit[:7]}", timeout=3)

    def action_kill(self) -> None:
        if not self.running:
            return
        n, desc, slot = self.current_iteration, self.current_description, None
        if self.parallel:
            s = self.query_one(SlotsPane).current
            if s is None or not s.started_at:
                self.app.notify("nothing runs in the selected slot (0-9 or tab picks another)", timeout=4)
                return
            n, desc, slot = s.iteration, s.description, s.index

        def done(yes: bool | None) -> None:
            if yes and self.session.kill_run(slot=slot):
                self.app.notify(f"killing #{n}; it is recorded as crash", severity="warning")

        self.app.push_screen(ConfirmScreen(f"Kill experiment #{n} ({desc[:50]})? It is recorded as crash.", "Kill"), done)

    def _override(self, status: str) -> None:
        rec = self.query_one(ResultsTable).selected()
        if rec is None:
            return
        self.session.override(rec.iteration, status)
        self.app.notify(f"#{rec.iteration} → {status}" + (" (after the current run)" if self.running else ""), timeout=5)

    def action_keep(self) -> None:
        self._override("keep")

    def action_discard(self) -> None:
        self._override("discard")

    def action_show_diff(self) -> None:
        rec = self.query_one(ResultsTable).selected()
        if rec is None:
            return
        screen = ExperimentScreen(f"#{rec.iteration} {rec.description} — {rec.status} · c copies the diff · a the model's answers",
                                  lambda: self.session.experiment_answers(rec))
        self.app.push_screen(screen)
        self._load_diff(rec, screen)

    @work(thread=True, group="diff")
    def _load_diff(self, rec: Any, screen: TextScreen) -> None:
        body = self.session.experiment_detail(rec)
        try:
            diff = self.session.experiment_diff(rec)
        except (GitError, OSError):
            diff = ""  # the body says why
        try:
            self.app.call_from_thread(screen.set_body, body, diff)
        except Exception:  # noqa: BLE001 - the dialog was closed meanwhile
            pass

    @on(DataTable.RowSelected)
    def _row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_show_diff()

    def action_focus_idea(self) -> None:
        self.query_one("#idea-input", Input).focus()

    def action_sweep(self) -> None:
        """From the palette: the idea input, started with `sweep ` (NAME and the values follow)."""
        box = self.query_one("#idea-input", Input)
        box.value = "sweep "
        box.cursor_position = len(box.value)
        box.focus()
        self.app.notify("sweep NAME v1 v2 …: one experiment per value, over the free slots; the best is kept if it wins", timeout=8)

    def action_leave_input(self) -> None:
        self.query_one(ResultsTable).focus()

    def action_follow_log(self) -> None:
        from textual.widgets import Log

        self.query_one(Log).scroll_end(animate=False)

    @on(Input.Submitted, "#idea-input")
    async def _idea(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if text:
            ok = await asyncio.to_thread(self.session.add_idea, text)
            if ok:
                problem = await asyncio.to_thread(self.session.idea_problem, text)
                if problem:
                    self.app.notify(f"queued: {text[:60]} — but {problem}", severity="warning", timeout=10, markup=False)
                else:
                    self.app.notify(f"queued for the next iteration: {text[:60]}", timeout=4, markup=False)

    def action_chart(self) -> None:
        from ..asciichart import render

        table = self.query_one(ResultsTable)
        h = History(table.records.values(), direction=self.cfg.metric.direction)
        size = self.app.size
        body = render(h.records, h.running_best(), h.direction, width=max(30, size.width - 30), height=max(8, size.height - 16))
        self.app.push_screen(TextScreen(f"{self.cfg.metric.name}: every experiment, kept ones, running best", body))

    def action_curve(self) -> None:
        pane = self.query_one(CurvePane)
        size = self.app.size
        self.app.push_screen(TextScreen("loss against the share of the budget: ● this run · best ○ baseline",
                                        pane.text(max(40, size.width - 8), max(8, size.height - 10))))

    def action_pick_theme(self) -> None:
        self.app.action_change_theme()

    def help_rows(self) -> list[tuple[str, str]]:
        """(key as shown on the key bar, what it does): one row per key, pause/resume on one."""
        rows: dict[str, list[str]] = {}
        for b in self.BINDINGS:
            if isinstance(b, Binding) and not (self.ended and b.id in self.LIVE_ONLY) \
                    and not (self.watching and b.id in self.CHANGES_SESSION):
                key = self.app.get_key_display(b)
                what = HELP_TEXT.get(b.id or "", b.description)
                if what not in rows.setdefault(key, []):
                    rows[key].append(what)
        rows.setdefault("0-9", ["several slots: pick the slot the log follows and x kills"])
        rows.setdefault("ctrl+p", ["command palette: every action, searchable"])
        return [(k, " / ".join(v)) for k, v in rows.items()]

    def action_help(self) -> None:
        width = max(len(k) for k, _ in self.help_rows()) + 2
        lines = [f"  {k:<{width}}{what}" for k, what in self.help_rows()]
        lines += ["", "The loop: propose → commit → run under the budget → measure → keep if better, else revert.",
                  "Crashes, timeouts, NaN and a touched evaluator are recorded as crash; nothing is lost.",
                  "Keys can be remapped in ~/.config/autoresearch-tui/keymap.toml (id = \"key\"; ids: "
                  + ", ".join(b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id) + ")."]
        self.app.push_screen(TextScreen("Keys — escape closes", "\n".join(lines)))

    def action_quit(self) -> None:
        app: Any = self.app
        if self.watching:  # the session is another process's: leaving changes nothing
            app.exit(0)
            return
        if not self.running:
            app.shutdown("stop")
            return

        def done(choice: str | None) -> None:
            if choice in ("after", "kill", "detach"):
                app.shutdown(choice)

        self.app.push_screen(QuitScreen(self.current_iteration, self.current_description), done)
