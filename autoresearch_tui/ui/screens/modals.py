"""Small modal screens: confirm, quit choices, an experiment's diff, help."""

from __future__ import annotations

from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel", id="confirm-cancel"),
                Binding("y", "dismiss(True)", "Yes", id="confirm-yes"),
                Binding("n", "dismiss(False)", "No", id="confirm-no")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            yield Button(f"{self.yes} (y)", variant="error", id="yes")
            yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class QuitScreen(ModalScreen[str]):
    """What happens to the running experiment when you quit: you choose, nothing is silent."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel", id="quit-cancel")]

    def __init__(self, iteration: int | None, description: str) -> None:
        super().__init__()
        self.iteration, self.description = iteration, description

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Experiment #{self.iteration} is running ({self.description[:60]}).", classes="question")
            yield Button("Finish this run, record it, then quit", id="after", variant="primary")
            yield Button("Kill the run now (recorded as crash) and quit", id="kill", variant="error")
            yield Button("Quit and leave the run going: the next start re-attaches to it", id="detach")
            yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")


class TextScreen(ModalScreen[None]):
    """A scrollable text (an experiment's diff and log tail, the help). With `copy_what`, c copies
    the part of it set with `set_body(body, copy_text)` (an experiment's diff) to the clipboard."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="text-close"),
                Binding("c", "copy", "Copy", id="text-copy")]

    def __init__(self, title: str, body: str = "loading…", copy_what: str = "") -> None:
        super().__init__()
        self.title_text, self.body = title, body
        self.copy_what = copy_what
        self.copy_text = ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "copy":
            return bool(self.copy_what)
        return True

    def action_copy(self) -> None:
        if not self.copy_text:
            self.app.notify(f"nothing to copy: no {self.copy_what.removeprefix('the ')} here", timeout=3)
            return
        self.app.copy_to_clipboard(self.copy_text)
        n = self.copy_text.count("\n") + (not self.copy_text.endswith("\n"))
        self.app.notify(f"copied {self.copy_what} ({n} lines)", timeout=3)

    def compose(self) -> ComposeResult:
        with Vertical(classes="textbox"):
            yield Label(self.title_text, classes="question")
            with VerticalScroll():
                yield Static(self.body, id="text-body", markup=False)

    def set_body(self, body: str, copy_text: str = "") -> None:
        self.body, self.copy_text = body, copy_text
        self.query_one("#text-body", Static).update(body)


class ExperimentScreen(TextScreen):
    """An experiment's diff view; `a` opens the model's raw answers that led to it (the rejected
    attempts first, each with the reason), read from its transcripts."""

    BINDINGS = [Binding("a", "answers", "Answers", id="text-answers")]

    def __init__(self, title: str, answers: Callable[[], str], body: str = "loading…") -> None:
        super().__init__(title, body, copy_what="the diff")
        self.answers = answers

    def action_answers(self) -> None:
        screen = TextScreen(f"{self.title_text.split(' · ')[0]} — the model's answers · escape closes")
        self.app.push_screen(screen)
        self._load_answers(screen)

    @work(thread=True, group="answers")
    def _load_answers(self, screen: TextScreen) -> None:
        text = self.answers()
        try:
            self.app.call_from_thread(screen.set_body, text)
        except Exception:  # noqa: BLE001 - closed meanwhile
            pass
