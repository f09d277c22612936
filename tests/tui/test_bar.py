"""Progress bars draw the exact fraction at their width when painted, whenever it was set."""

from __future__ import annotations

import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.renderables.bar import Bar as BarRenderable

from wsitui.tui.widgets.bar import FractionBar

pytestmark = pytest.mark.anyio


def cells(renderable: object, width: int) -> str:
    console = Console(width=width, color_system=None, legacy_windows=False)
    with console.capture() as capture:
        console.print(renderable, end="")
    return capture.get()


async def test_fraction_set_before_a_resize_is_drawn_for_the_new_width():
    class Bars(App[None]):
        def compose(self) -> ComposeResult:
            yield FractionBar()

    app = Bars()
    async with app.run_test(size=(40, 3)) as pilot:
        bar = app.query_one(FractionBar)
        bar.styles.width = 10
        await pilot.pause()
        bar.fraction = 0.33  # at 10 cells, 6.6 half cells: Textual's bar would keep 6 (0.30)
        await pilot.pause()
        bar.styles.width = 13  # the card's column settled wider after the value was set
        await pilot.pause()
        drawn = cells(bar.render(), 13)
    expected = cells(BarRenderable(highlight_range=(0, 13 * 0.33)), 13)
    assert drawn == expected
    assert drawn != cells(BarRenderable(highlight_range=(0, 13 * 0.30)), 13)
