"""Small modal screens: confirm, quit choices, an experiment's diff, help."""

from __future__ import annotations

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
    """A scrollable text (an experiment's diff and log tail, the help)."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="text-close")]

    def __init__(self, title: str, body: str = "loading…") -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="textbox"):
            yield Label(self.title_text, classes="question")
            with VerticalScroll():
                yield Static(self.body, id="text-body", markup=False)

    def set_body(self, body: str) -> None:
        self.query_one("#text-body", Static).update(body)
