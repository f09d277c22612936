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
        self,
        *,
        id: str | None = None,
        classes: str | None = None,
        sep: str | None = None,
        cut_first: bool = False,
        first_keeps: int | None = None,
    ) -> None:
        """`sep`: the text is parts joined by it; one too long for the line drops whole parts
        from the end and ends in " …" (cut mid-part it read "00:45 · ETA 00:42 ·…").
        `cut_first`: the first part (a name) is cut with "…" before the parts after it go,
        down to `first_keeps` cells (default: half the line)."""
        super().__init__(id=id, classes=classes)
        self._shown: Text | None = None
        self._sep = sep
        self._cut_first = cut_first
        self._first_keeps = first_keeps

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
        if self._cut_first:
            text = self._shorter_first(text, width)
            if text.cell_len <= width:
                return text
        plain, end = text.plain, len(text.plain)
        while (end := plain.rfind(self._sep, 0, end)) > 0:
            if text[:end].cell_len + 2 <= width:
                return Text.assemble(text[:end], " …")
        return _cut(text, width)  # not even the first part fits: the ellipsis cuts it

    def _shorter_first(self, text: Text, width: int) -> Text:
        """A first part (a name) longer than half the line (or `first_keeps`) cut to what the
        parts after it leave, at least that (whole parts then go from the end as usual): a
        200-character workflow name hid its job count, state and percent."""
        first = text.plain.find(self._sep)
        if first <= 0:
            return text
        head, rest = text[:first], text[first:]
        keeps = width // 2 if self._first_keeps is None else min(self._first_keeps, width)
        budget = max(keeps, width - rest.cell_len)
        return Text.assemble(_cut(head, budget), rest) if head.cell_len > budget else text

    @property
    def text(self) -> str:
        """The plain text shown (what a person reads)."""
        return self._shown.plain if self._shown is not None else ""


def _cut(text: Text, width: int) -> Text:
    """`text` on one line of `width` cells, ending in "…" if cut (a Static wrapped it at a
    space instead, and the line showed a shorter text with nothing to say it was cut)."""
    out = text.copy()
    out.truncate(width, overflow="ellipsis")
    return out
