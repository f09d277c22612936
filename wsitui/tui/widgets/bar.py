"""A progress bar drawn from a fraction at paint time, in half cells of its current width.

Textual's ProgressBar rounds the stored percentage to half cells of the width the bar has *when
the value is set*. A bar set before layout settled (a card mounted while its column still
resizes) kept a value rounded for the old width and drew half a cell off, depending on timing:
that made snapshots flaky under load. This bar stores the exact fraction and rounds only when
it paints. It also has no per-bar timer (ProgressBar refreshes itself every second for ETA).
"""

from __future__ import annotations

from rich.style import Style
from textual.app import RenderResult
from textual.reactive import reactive
from textual.renderables.bar import Bar as BarRenderable
from textual.widget import Widget


class FractionBar(Widget, can_focus=False):
    COMPONENT_CLASSES = {"bar--bar", "bar--complete"}
    DEFAULT_CSS = """
    FractionBar {
        width: 1fr;
        height: 1;
        &> .bar--bar { color: $primary; background: $surface; }
        &> .bar--complete { color: $success; background: $surface; }
    }
    """

    fraction: reactive[float] = reactive(0.0)

    def _validate_fraction(self, fraction: float) -> float:
        return min(1.0, max(0.0, fraction))

    def render(self) -> RenderResult:
        style = self.get_component_rich_style(
            "bar--complete" if self.fraction >= 1.0 else "bar--bar"
        )
        return BarRenderable(
            highlight_range=(0, self.size.width * self.fraction),
            highlight_style=Style.from_color(style.color),
            background_style=Style.from_color(style.bgcolor),
        )
