"""Help screen: every key, built from the app's bindings (so it never drifts from them)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from wsitui.tui.screens.dialogs import DIALOG_CSS


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        for b in self.bindings:
            keys = ", ".join(k.replace("question_mark", "?") for k in b.key.split(","))
            table.add_row(f"[b]{keys}[/b]", b.description)
        with Vertical():
            yield Label("wsitui keys", classes="title")
            yield Static(table)
            yield Label(
                "Arrows move between job cards; tab moves between panes. ctrl+p opens the "
                "command palette. Job state lives on disk: quitting and starting again resumes.",
                classes="hint",
            )
