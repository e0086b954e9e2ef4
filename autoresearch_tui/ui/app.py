"""The Textual application: the wizard when there is no configuration, then the main screen.

The engine session runs in one named worker on the App (`group="engine"`); its events reach the
main screen as messages. The UI follows events only: it reads no engine state, and talks to the
session through its commands and queries. Quitting never kills a run silently: the quit dialog
says what happens to it ("leave it running" really does), and a safety net after the app has
closed kills a run that would otherwise be left behind. An unexpected engine error writes its
traceback to `.autoresearch/crash-*.log` and ends the app with exit code 1, as headless does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.notifications import Notify
from textual.screen import Screen

from ..config import Config
from ..engine.events import Event
from ..engine.session import Session
from ..engine.setup import SetupError
from ..errors import EngineFailure, write_crash
from ..launch import new_session
from .messages import EngineEvent
from .screens.main import MainScreen
from .settings import load_keymap, load_settings, save_settings
from .themes import DEFAULT_THEME, load_themes


class AutoresearchApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "autoresearch-tui"
    ENABLE_COMMAND_PALETTE = True
    #: toasts on screen at once (the newest win): more would cover the results table
    MAX_TOASTS = 2
    #: the same notice again while it is shown, or within this many seconds, is not shown again
    REPEAT_WINDOW_S = 10.0

    def __init__(
        self,
        cfg: Config | None = None,
        engine: Session | None = None,
        config_path: Path | None = None,
        max_iterations: int | None = None,
        clock: Callable[[], float] = time.time,
        run_engine: bool = True,
        wizard_options: dict[str, Any] | None = None,
        watching: bool = False,
    ) -> None:
        super().__init__()
        self.watching = watching  # `engine` is a Follower of a session another process runs
        self.cfg = cfg
        self.engine = engine
        self.config_path = config_path
        self.max_iterations = max_iterations
        self.clock = clock
        self.should_run_engine = run_engine
        self.wizard_options = wizard_options or {}
        self.main: MainScreen | None = None
        self.end_reason = ""
        self.setup_error = ""
        self.failure: EngineFailure | None = None
        self._quit_when_done = False
        self._theme_ready = False
        self._recent_toasts: dict[tuple[str, str, str], float] = {}
        self._wizard: Any = None

    # ------------------------------------------------------------------ start
    def on_mount(self) -> None:
        self._load_themes()
        keymap, err = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if err:
            self.notify(f"key map ignored: {err}", severity="warning")
        if self.engine is None and self.cfg is not None:
            self.engine = new_session(self.cfg, max_iterations=self.max_iterations)
        if self.engine is not None:
            self.show_main()
        else:
            from .screens.wizard import WizardScreen

            self._wizard = WizardScreen(self.config_path or Path("autoresearch.toml"), **self.wizard_options)
            self.push_screen(self._wizard, self._wizard_done)

    def _wizard_done(self, cfg: Config | None) -> None:
        if cfg is None:
            problem = getattr(self._wizard, "problem", None)
            if problem:  # left without the repository the wizard offered to create: as before, exit 2
                self.setup_error = problem
                self.exit(2, return_code=2)
            else:
                self.exit(0)
            return
        self.cfg = cfg
        self.engine = new_session(cfg, max_iterations=self.max_iterations)
        self.show_main()

    def show_main(self) -> None:
        assert self.engine is not None
        assert self.cfg is not None
        self.main = MainScreen(self.engine, self.cfg, clock=self.clock, live_git=self.should_run_engine, watching=self.watching)
        self.push_screen(self.main)
        if self.should_run_engine:
            self.engine.subscribe(self._bridge)
            self.run_engine_worker()

    def restart_session(self) -> None:
        """After a session ended: a new one on the same configuration in this app (it resumes the
        branch: no new baseline, the history read back)."""
        if self.cfg is None or self.main is None or not self.should_run_engine:
            return
        self.engine = new_session(self.cfg, max_iterations=self.max_iterations)
        self.main.attach(self.engine)
        self.engine.subscribe(self._bridge)
        self.run_engine_worker()
        self.notify("a new session starts on the same configuration", timeout=4)

    def _bridge(self, event: Event) -> None:
        if self.main is not None:
            self.main.post_message(EngineEvent(event))

    @work(exclusive=True, group="engine", exit_on_error=False)
    async def run_engine_worker(self) -> None:
        assert self.engine is not None
        try:
            self.end_reason = await self.engine.run()
        except SetupError as e:
            self.setup_error = str(e)
            self.exit(2, return_code=2, message=f"autoresearch-tui: {e}")
            return
        except Exception as e:  # noqa: BLE001 - the one handler for an engine that died of a bug
            root = self.cfg.root if self.cfg is not None else None
            self.failure = EngineFailure(f"{type(e).__name__}: {e}", write_crash(e, root))
            self.exit(1, return_code=1)
            return
        finally:
            if self._quit_when_done:
                self.exit(0)

    # ---------------------------------------------------------- notifications
    def _on_notify(self, event: Notify) -> None:
        """Before Textual shows a toast: the same news again soon after is dropped, and only the
        newest MAX_TOASTS stay (older ones make room)."""
        n = event.notification
        now = time.monotonic()
        key = (n.message, n.title, n.severity)
        self._recent_toasts = {k: t for k, t in self._recent_toasts.items() if now - t < self.REPEAT_WINDOW_S}
        if key in self._recent_toasts or any((o.message, o.title, o.severity) == key for o in self._notifications):
            event.prevent_default()  # App._on_notify, which would add it, does not run
            return
        self._recent_toasts[key] = now
        shown = list(self._notifications)
        for old in shown[: max(0, len(shown) - self.MAX_TOASTS + 1)]:
            self._unnotify(old, refresh=False)  # App._on_notify adds the new one and refreshes

    # ----------------------------------------------------------------- themes
    def _load_themes(self) -> None:
        themes, errors = load_themes()
        for t in themes:
            self.register_theme(t)
        if errors:
            self.notify("broken theme files (ignored):\n" + "\n".join(errors), severity="warning", timeout=20)
        wanted = load_settings().get("theme") or (self.cfg.ui.theme if self.cfg else "") or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.notify(f"theme '{wanted}' not found; using {DEFAULT_THEME}", severity="warning")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._theme_ready = True

    def _theme_changed(self, theme: Any) -> None:
        if self._theme_ready:
            save_settings(theme=theme.name)
            if self.main is not None:
                self.main.query_one("#status").refresh_status()

    # ---------------------------------------------------------------- palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, MainScreen) and screen.watching:
            return
        if isinstance(screen, MainScreen):
            for b in screen.BINDINGS:
                if getattr(b, "id", None) in ("leave", "follow") or screen.check_action(b.action, ()) is False:
                    continue
                yield SystemCommand(f"{b.description} ({b.key})", f"autoresearch: {b.description.lower()}",
                                    lambda a=b.action: screen.run_action(a))
            yield SystemCommand("Sweep a constant", "autoresearch: one experiment per value over the free slots "
                                "(sweep LR 0.02 0.04 0.08)", screen.action_sweep)

    # ------------------------------------------------------------------ quit
    def shutdown(self, how: str) -> None:
        """how: 'after' (finish the run), 'kill', 'detach' (leave it running), 'stop' (no run)."""
        engine = self.engine
        if engine is None or self.watching:
            self.exit(0)
            return
        self._quit_when_done = True
        if how == "after":
            engine.stop_after_run()
            self.notify("quitting after the current run is recorded", timeout=10)
            return
        if how == "detach":
            engine.detach()
            self.workers.cancel_group(self, "engine")
            self.exit(0)
            return
        engine.stop_now()
        if how == "stop" and not (self.main is not None and self.main.running):
            self.workers.cancel_group(self, "engine")
            self.exit(0)

    def action_quit(self) -> None:  # ctrl+q and the palette's quit go through the same dialog
        if self.main is not None and self.screen is self.main:
            self.main.action_quit()
        else:
            self.exit(0)


def run_watch(cfg: Config, poll_s: float = 0.5) -> str:
    """`watch`: the main screen on a session another process runs, read from its files."""
    from ..follow import Follower

    app = AutoresearchApp(cfg, engine=Follower(cfg, poll_s=poll_s), watching=True)  # type: ignore[arg-type]
    app.run()
    return ""


def run_app(cfg: Config | None, engine: Session | None = None, config_path: Path | None = None, max_iterations: int | None = None) -> str:
    app = AutoresearchApp(cfg, engine=engine, config_path=config_path, max_iterations=max_iterations)
    try:
        app.run()
    finally:
        # the safety net: Textual cancels workers without waiting for them
        if app.engine is not None:
            app.engine.abandon()
            notifier = getattr(app.engine, "notifier", None)
            if notifier is not None:
                notifier.close()  # its last messages (the session's end) go out before the process exits
    if app.setup_error:
        raise SetupError(app.setup_error)
    if app.failure is not None:
        raise app.failure
    return app.end_reason
