"""A one-message Textual app: what a browser tab shows when it cannot open the TUI."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Middle
from textual.widgets import Footer, Static


class NoticeApp(App[None]):
    CSS = """
    Screen { align: center middle; }
    #notice { width: 72; padding: 1 2; border: round $warning; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q,escape", "quit", "Close")]
    TITLE = "wsitui"

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static(self.message, id="notice", markup=False)
        yield Footer()


def show_notice(message: str) -> None:
    NoticeApp(message).run()
