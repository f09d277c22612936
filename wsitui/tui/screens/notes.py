"""The notifications log (N): every message the app showed, newest first, since it started.

Toasts vanish after a few seconds (and at 80 columns cover half the lanes); this keeps them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Static

from wsitui.tui.widgets.footer import FitFooter

SEVERITY_STYLE = {"information": "", "warning": "yellow", "error": "bold red"}


@dataclass(frozen=True, slots=True)
class Note:
    ts: float
    severity: str
    title: str
    message: str


class NotesScreen(Screen[None]):
    DEFAULT_CSS = """
    NotesScreen VerticalScroll { padding: 0 1; }
    NotesScreen .section { text-style: bold; color: $accent; }
    """
    BINDINGS = [Binding("escape,q,N", "app.pop_screen", "Back")]

    def __init__(self, notes: Sequence[Note]) -> None:
        super().__init__()
        self.notes = list(notes)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label(f"Notifications ({len(self.notes)}, newest first)", classes="section")
            if not self.notes:
                yield Label("none yet")
            for note in reversed(self.notes):
                line = Text(time.strftime("%H:%M:%S ", time.localtime(note.ts)), style="dim")
                if note.title:
                    line.append(f"{note.title}: ", style="bold")
                line.append(note.message, style=SEVERITY_STYLE.get(note.severity, ""))
                yield Static(line)
        yield FitFooter()
