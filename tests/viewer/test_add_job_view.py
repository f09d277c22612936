"""F2 in the add-job dialog opens the viewer on the slide path typed (no overlays); esc comes
back to the dialog with everything as typed."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label

from tests.tui.conftest import make_app
from tests.tui.helpers import settle, wait_for
from wsitui.tui.screens.dialogs import AddJobDialog
from wsitui.tui.screens.viewer import ViewerScreen

pytestmark = pytest.mark.anyio


async def test_f2_views_the_typed_slide_and_returns_to_the_dialog(tmp_path, sample_dir):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", *"w", "enter")
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, AddJobDialog)
        slide = str(sample_dir / "s.svs")
        dialog.query_one("#slide", Input).focus()
        await pilot.press(*slide)  # typed: F2 must not be taken as text, nor v
        dialog.query_one("#key", Input).value = "masks1"
        await pilot.press("f2")
        await pilot.pause()
        viewer = app.screen
        assert isinstance(viewer, ViewerScreen)
        assert str(viewer.slide_path) == slide
        assert viewer.cells_path is None and viewer.tissue_path is None
        await wait_for(pilot, lambda: viewer.compositor is not None or viewer.error is not None)
        assert viewer.error is None
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is dialog
        assert dialog.query_one("#slide", Input).value == slide
        assert dialog.query_one("#key", Input).value == "masks1"
        await app.shutdown()


async def test_the_view_button_and_an_empty_path(tmp_path, sample_dir):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", *"w", "enter")
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, AddJobDialog)
        await pilot.press("f2")  # nothing typed: a one-line hint, no viewer
        await pilot.pause()
        assert app.screen is dialog
        assert "give the path of a slide file" in str(dialog.query_one("#error", Label).render())
        dialog.query_one("#slide", Input).value = str(sample_dir / "s.svs")
        await pilot.click("#view")
        await pilot.pause()
        assert isinstance(app.screen, ViewerScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is dialog
        await app.shutdown()
