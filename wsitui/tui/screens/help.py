"""Help screen: every key, built from the app's bindings (so it never drifts from them)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from wsitui.tui.screens.dialogs import Dialog

KEY_NAMES = {"question_mark": "?", "slash": "/", "ctrl+p": "^p"}


def key_text(keys: str) -> str:
    return ", ".join(KEY_NAMES.get(k, k) for k in keys.split(","))


class HelpScreen(Dialog[None]):
    """Scrolls (↑↓, pgup/pgdn) when taller than the terminal; its last line says how to close."""

    DEFAULT_CSS = """
    HelpScreen #help-body { height: auto; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(
        self, bindings: list[Binding], sections: Sequence[tuple[str, Sequence[Binding]]] = ()
    ) -> None:
        super().__init__()
        self.bindings = bindings
        self.sections = sections  # (where, its own keys): a widget's keys, e.g. a cohort table

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        for b in self.bindings:
            table.add_row(f"[b]{key_text(b.key)}[/b]", b.description)
        for where, keys in self.sections:
            table.add_row("", f"[i]{where}:[/i]")
            for b in keys:
                table.add_row(f"[b]{key_text(b.key)}[/b]", b.description)
        with Vertical(classes="dialog-box"):
            yield Label("wsitui keys", classes="title")
            with VerticalScroll(id="help-body"):
                yield Static(table)
                yield Label(
                    "j/k/h/l or arrows move between job cards; tab moves between panes; ^p "
                    "opens the command palette. Job state lives on disk: quitting and starting "
                    "again resumes.",
                    classes="hint",
                )
            yield Label("↑↓ scroll · esc, q or ? closes", classes="keys")

    def on_mount(self) -> None:
        self._fit()
        self.query_one("#help-body").focus()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The key list scrolls inside the box; title and close hint always show."""
        self.query_one("#help-body").styles.max_height = max(3, self.app.size.height - 6)
