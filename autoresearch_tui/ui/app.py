"""The Textual application: the wizard when there is no configuration, then the main screen.

The engine runs in one named worker on the App (`group="engine"`); its events reach the main
screen as messages (`post_message` is safe from any thread). Quitting never kills a run
silently: the quit dialog says what happens to it, and a safety net after the app has closed
kills a run that would otherwise be left behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from ..config import Config
from ..engine import runner
from ..engine.events import Event
from ..engine.loop import Engine, SetupError
from .messages import EngineEvent
from .screens.main import MainScreen
from .settings import load_keymap, load_settings, save_settings
from .themes import DEFAULT_THEME, load_themes


class AutoresearchApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "autoresearch-tui"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        cfg: Config | None = None,
        engine: Engine | None = None,
        config_path: Path | None = None,
        max_iterations: int | None = None,
        clock: Callable[[], float] = time.time,
        run_engine: bool = True,
        wizard_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
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
        self._quit_when_done = False
        self._theme_ready = False

    # ------------------------------------------------------------------ start
    def on_mount(self) -> None:
        self._load_themes()
        keymap, err = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if err:
            self.notify(f"key map ignored: {err}", severity="warning")
        if self.engine is None and self.cfg is not None:
            self.engine = Engine(self.cfg, max_iterations=self.max_iterations)
        if self.engine is not None:
            self.show_main()
        else:
            from .screens.wizard import WizardScreen

            self.push_screen(WizardScreen(self.config_path or Path("autoresearch.toml"), **self.wizard_options), self._wizard_done)

    def _wizard_done(self, cfg: Config | None) -> None:
        if cfg is None:
            self.exit(0)
            return
        self.cfg = cfg
        self.engine = Engine(cfg, max_iterations=self.max_iterations)
        self.show_main()

    def show_main(self) -> None:
        assert self.engine is not None
        self.main = MainScreen(self.engine, clock=self.clock, live_git=self.should_run_engine)
        self.push_screen(self.main)
        if self.should_run_engine:
            self.engine.subscribe(self._bridge)
            self.run_engine_worker()

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
            self.exit(2, message=f"autoresearch-tui: {e}")
            return
        finally:
            if self._quit_when_done:
                self.exit(0)

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
        if isinstance(screen, MainScreen):
            for b in screen.BINDINGS:
                if getattr(b, "id", None) in ("leave", "follow"):
                    continue
                yield SystemCommand(f"{b.description} ({b.key})", f"autoresearch: {b.description.lower()}",
                                    lambda a=b.action: screen.run_action(a))

    # ------------------------------------------------------------------ quit
    def shutdown(self, how: str) -> None:
        """how: 'after' (finish the run), 'kill', 'detach' (leave it running), 'stop' (no run)."""
        engine = self.engine
        if engine is None:
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
        if how == "stop" and engine.current_run is None:
            self.workers.cancel_group(self, "engine")
            self.exit(0)

    def action_quit(self) -> None:  # ctrl+q and the palette's quit go through the same dialog
        if self.main is not None and self.screen is self.main:
            self.main.action_quit()
        else:
            self.exit(0)


def run_app(cfg: Config | None, engine: Engine | None = None, config_path: Path | None = None, max_iterations: int | None = None) -> str:
    app = AutoresearchApp(cfg, engine=engine, config_path=config_path, max_iterations=max_iterations)
    try:
        app.run()
    finally:
        # the safety net: Textual cancels workers without waiting for them
        eng = app.engine
        if eng is not None and eng.current_run is not None and not eng.detaching:
            runner.kill_tree(eng.current_run, eng.cfg.research.kill_grace_s)
        if eng is not None:
            eng.lock.release()
    if app.setup_error:
        raise SetupError(app.setup_error)
    return app.end_reason
