"""A footer that shows only the keys that fit whole.

Textual's footer lays its keys out in a row and cuts the row at the terminal's edge: at 60
columns the main screen's ended in "? He" and `q Quit` was gone. This one hides whole keys,
last first, and keeps help and quit (the help screen lists every key) while they fit.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEEP = ("help", "quit", "app.pop_screen", "dismiss", "close")  # the way to every key, and out


def key_width(key: FooterKey) -> int:
    """Columns `key` takes in the row: its text, padding, border and margin."""
    text = key.get_content_width(Size(1000, 1), Size(1000, 1))
    return text + key.styles.gutter.width + key.styles.margin.width


def keys_that_fit(widths: list[tuple[str, int]], room: int) -> set[int]:
    """Indexes of the keys to show: all if they fit, else without the last ones that are not
    help or quit, then without those too (from the end) if even they do not fit."""
    shown = list(range(len(widths)))
    total = sum(w for _, w in widths)
    for keep in (False, True):
        for i in reversed(list(shown)):
            if total <= room:
                return set(shown)
            if keep or widths[i][0] not in KEEP:
                shown.remove(i)
                total -= widths[i][1]
    return set(shown)


class FitFooter(Footer):
    """`Footer` without half-words: keys that do not fit whole are hidden."""

    async def recompose(self) -> None:
        await super().recompose()
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        if not self.size.width:
            return  # not laid out yet: the first resize fits it
        keys = [k for k in self.query(FooterKey) if not k.has_class("-command-palette")]
        room = self.size.width
        room -= sum(key_width(k) for k in self.query(FooterKey) if k.has_class("-command-palette"))
        shown = keys_that_fit([(k.action, key_width(k)) for k in keys], room)
        for i, key in enumerate(keys):
            key.display = i in shown
