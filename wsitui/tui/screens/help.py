"""Help screen: every key, built from the app's bindings (so it never drifts from them)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Size
from textual.widgets import Label, Static

from wsitui.tui.screens.dialogs import Dialog

KEY_NAMES = {"question_mark": "?", "slash": "/", "ctrl+p": "^p"}
# The smallest terminal the box fits whole: its close line (31 columns) unwrapped, and its
# title, three lines of keys and the close line. Below it the box was cut (at 40x8 the close
# line was gone, at 30x10 "closes" was): the screen says how big it must be instead.
HELP_MIN = Size(40, 10)


def key_text(keys: str) -> str:
    return ", ".join(KEY_NAMES.get(k, k) for k in keys.split(","))


class HelpScreen(Dialog[None]):
    """Scrolls (↑↓, pgup/pgdn) when taller than the terminal; its last line says how to close."""

    DEFAULT_CSS = """
    HelpScreen #help-body { height: auto; }
    HelpScreen #help-too-small {
        display: none; width: 100%; height: 100%; content-align: center middle;
        text-style: bold; background: $surface;
    }
    HelpScreen.-too-small #help-too-small { display: block; }
    HelpScreen.-too-small .dialog-box { display: none; }
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
        yield Static(id="help-too-small")

    def on_mount(self) -> None:
        self._fit(self.app.size)
        self.query_one("#help-body").focus()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size)

    def _fit(self, size: Size) -> None:
        """The key list scrolls inside the box; title and close hint always show. On a
        terminal too small for that, say how big it must be (and how to close)."""
        small = size.width < HELP_MIN.width or size.height < HELP_MIN.height
        self.set_class(small, "-too-small")
        self.query_one("#help-too-small", Static).update(
            f"terminal too small\nfor help: {size.width}×{size.height}\n"
            f"needs {HELP_MIN.width}×{HELP_MIN.height}\nesc closes"
        )
        self.query_one("#help-body").styles.max_height = max(3, size.height - 6)
