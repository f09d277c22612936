"""One line of live text that repaints only itself, and only when its text changes.

A plain Label asks for a new layout on every update (its width follows its text), and a layout
repaints its container: on the job detail screen that redrew the sixel preview every second
with the clock, so the image flickered (each repaint first blanks the cells under the image).
This line has a fixed size, so an update never needs a layout.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import RenderResult
from textual.widgets import Static


class LiveLine(Static):
    DEFAULT_CSS = """
    LiveLine { width: 1fr; height: 1; }
    """

    def __init__(
        self, *, id: str | None = None, classes: str | None = None, sep: str | None = None
    ) -> None:
        """`sep`: the text is parts joined by it; one too long for the line drops whole parts
        from the end and ends in " …" (cut mid-part it read "00:45 · ETA 00:42 ·…")."""
        super().__init__(id=id, classes=classes)
        self._shown: Text | None = None
        self._sep = sep

    def show(self, text: Text, *, layout: bool = False) -> None:
        """Show `text` if it changed; `layout=True` for a line whose height follows its text
        (height: auto), which must be laid out again when the text changes."""
        if text != self._shown:
            self._shown = text
            self.update(text, layout=layout)

    def render(self) -> RenderResult:
        text, width = self._shown, self.content_region.width
        if self._sep is None or text is None or width <= 0 or text.cell_len <= width:
            return super().render()
        plain, end = text.plain, len(text.plain)
        while (end := plain.rfind(self._sep, 0, end)) > 0:
            if text[:end].cell_len + 2 <= width:
                return Text.assemble(text[:end], " …")
        return super().render()  # not even the first part fits: the ellipsis cuts it

    @property
    def text(self) -> str:
        """The plain text shown (what a person reads)."""
        return self._shown.plain if self._shown is not None else ""
