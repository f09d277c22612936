"""The viewer screen driven like a user: what is read for each pan and zoom, the point under
the cursor, overlays, next cell, esc; half-block snapshots at 80x24 and 120x40."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from textual import events
from textual.worker import WorkerCancelled

from tests.tui.helpers import screen_text
from wsitui.tui.screens.viewer import ViewerApp, ViewerScreen
from wsitui.tui.widgets.slide_view import SlideView
from wsitui.viewer.view import nearest_level

SIZE = (4096, 3072)

pytestmark = pytest.mark.anyio


def make_app(
    d: Path, *, cells: bool = True, tissue: bool = True, slide: str = "s.svs"
) -> ViewerApp:
    screen = ViewerScreen(
        d / slide,
        cells=d / "cells.geojson" if cells else None,
        tissue=d / "tissue.geojson" if tissue else None,
        protocol="halfcell",
        standalone=True,
    )
    return ViewerApp(screen)


async def settle(app: ViewerApp, pilot) -> None:
    """Until the slide is open, the cells indexed and a sharp frame is on screen."""
    screen = app.screen
    assert isinstance(screen, ViewerScreen)
    for _ in range(400):
        with contextlib.suppress(WorkerCancelled):  # a newer view cancelled a render: fine
            await app.workers.wait_for_complete()
        await pilot.pause()
        sv = screen.slide_view
        loaded = screen.compositor is not None and not screen.cells_note.startswith("indexing")
        if screen.error or (
            loaded and sv.frame is not None
            and sv.frame.view == sv.view and sv.frame.complete
        ):  # fmt: skip
            return
    raise AssertionError("the viewer did not settle")


def check_reads(screen: ViewerScreen, since: int) -> None:
    """Everything read since `since` is at the frame's level, inside the slide, and covers the
    part of the slide under the view."""
    sv = screen.slide_view
    frame, view = sv.frame, sv.view
    assert frame is not None and view is not None and frame.view == view
    comp = screen.compositor
    assert comp is not None
    assert frame.level == nearest_level(comp.source.downsamples, view.scale)
    log = comp.source.read_log[since:]
    for level, x, y, w, h in log:
        assert level == frame.level
        assert x >= 0 and y >= 0 and x + w <= SIZE[0] and y + h <= SIZE[1]
    if comp.from_base(frame.level):
        assert log == []  # coarse views come from the thumbnail read at open
        return
    # Every cached tile the view needs is there; together they cover the view.
    keys = comp.source.tiles_for(view, frame.level)
    assert keys and all(comp.source.cached(k) is not None for k in keys)
    ds = comp.source.downsamples[frame.level]
    boxes = [comp.source.tile_box(k) for k in keys]
    vis = view.visible
    assert vis is not None
    assert min(b[0] for b in boxes) * ds <= vis[0] and min(b[1] for b in boxes) * ds <= vis[1]
    assert max(b[2] for b in boxes) * ds >= vis[2] and max(b[3] for b in boxes) * ds >= vis[3]


async def test_pan_and_zoom_read_the_nearest_level_within_the_slide(sample_dir):
    app = make_app(sample_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ViewerScreen)
        sv = screen.slide_view
        assert sv.view is not None and sv.view.visible == (0, 0, *SIZE)  # opens fitted
        levels = set()
        for keys in (["plus"], ["plus"], ["plus"], ["right"], ["l", "j"], ["plus"], ["k"],
                     ["plus"], ["h", "left"], ["minus"], ["down"], ["0"]):  # fmt: skip
            since = len(screen.compositor.source.read_log)
            before = sv.view
            await pilot.press(*keys)
            await settle(app, pilot)
            check_reads(screen, since)
            levels.add(sv.frame.level)
            if keys == ["right"]:
                assert sv.view.x0 - before.x0 == pytest.approx(0.25 * before.width * before.scale)
        assert levels == {0, 1, 2}
        assert sv.view == sv.view.fitted()


async def test_the_screen_shows_exactly_the_composed_view(sample_dir):
    app = make_app(sample_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("plus", "plus", "plus", "plus")
        await settle(app, pilot)
        screen = app.screen
        sv = screen.slide_view
        expected = screen.compositor.compose_sync(sv.view, sv.overlays)
        assert np.array_equal(sv.frame.rgb, expected.rgb)
        picture = sv.query_one(".picture")
        assert np.array_equal(np.asarray(picture.image), expected.rgb)


async def test_wheel_and_keys_zoom_about_the_cursor(sample_dir):
    app = make_app(sample_dir, cells=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        sv = app.screen.slide_view
        await pilot.hover(SlideView, offset=(30, 10))
        under = sv.view.to_slide(sv.pointer.px, sv.pointer.py)
        await pilot._post_mouse_events([events.MouseScrollUp], SlideView, offset=(30, 10))
        await settle(app, pilot)
        assert sv.view.scale == pytest.approx(sv.view.fit_scale / 2)
        assert sv.view.to_slide(sv.pointer.px, sv.pointer.py) == pytest.approx(under)
        await pilot.press("plus")  # the key zooms about the cursor too
        await settle(app, pilot)
        assert sv.view.scale == pytest.approx(sv.view.fit_scale / 4)
        assert sv.view.to_slide(sv.pointer.px, sv.pointer.py) == pytest.approx(under)
        await pilot._post_mouse_events([events.MouseScrollDown], SlideView, offset=(30, 10))
        await settle(app, pilot)
        assert sv.view.scale == pytest.approx(sv.view.fit_scale / 2)
        info = str(app.screen.query_one("#viewer-info").render())
        assert f"cursor {under[0]:,.0f}, {under[1]:,.0f} px" in info


async def test_dragging_moves_the_picture_with_the_mouse(sample_dir):
    app = make_app(sample_dir, cells=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        sv = app.screen.slide_view
        await pilot.press("plus", "plus")
        await settle(app, pilot)
        before = sv.view
        await pilot.mouse_down(SlideView, offset=(30, 10))
        x, y = sv.region.x + 25, sv.region.y + 8
        move = events.MouseMove(sv, x, y, -5, -2, 1, False, False, False, x, y)
        app.screen._forward_event(move)
        await pilot.mouse_up(SlideView, offset=(25, 8))
        await settle(app, pilot)
        cw, ch = sv.cell_px
        # The picture follows the mouse 5 cells left and 2 up: the view moves right and down.
        assert sv.view.x0 - before.x0 == pytest.approx(5 * cw * before.scale)
        assert sv.view.y0 - before.y0 == pytest.approx(2 * ch * before.scale)
        assert sv.view.scale == before.scale


async def test_next_cell_toggles_and_side_panel(sample_dir):
    app = make_app(sample_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        sv = screen.slide_view
        cells = screen.compositor.cells
        await pilot.press("n")
        await settle(app, pilot)
        first = sv.overlays.selected
        assert first is not None and sv.frame.cells_mode == "outlines"  # zoomed in to see it
        assert sv.view.centre == pytest.approx(tuple(float(v) for v in cells.centroid[first]))
        panel = str(screen.query_one("#viewer-cell").render())
        assert cells.ids[first] in panel and "Area µm^2" in panel
        await pilot.press("n", "n", "N")
        await settle(app, pilot)
        assert cells.rank[sv.overlays.selected] == cells.rank[first] + 1
        await pilot.press("c")
        await settle(app, pilot)
        assert sv.frame.cells_mode == "hidden"
        await pilot.press("t")
        await settle(app, pilot)
        assert not sv.overlays.tissue
        await pilot.press("g")
        await pilot.press(*"1000,500", "enter")
        await settle(app, pilot)
        assert sv.view.centre == pytest.approx((1000, 500))
        await pilot.press("escape")
        await pilot.pause()
        assert app.return_code == 0 or not app.is_running


async def test_a_slide_that_cannot_be_opened_is_one_line(sample_dir):
    app = make_app(sample_dir, slide="cells.geojson")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert screen.error is not None and "\n" not in screen.error
        assert "cells.geojson" in screen.error
        await pilot.press("plus", "n", "0", "t")  # keys do nothing, nothing crashes
        await pilot.pause()
        assert app.is_running


async def test_bad_cells_file_is_a_notification_and_the_slide_still_shows(sample_dir, tmp_path):
    bad = tmp_path / "cells.geojson"
    bad.write_text('{"type":"FeatureCollection","features":[\n{"a":1},\n{"a":,}\n]}')
    screen = ViewerScreen(sample_dir / "s.svs", cells=bad, protocol="halfcell", standalone=True)
    app = ViewerApp(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert screen.compositor is not None and screen.compositor.cells is None
        assert screen.slide_view.frame is not None
        notes = [n.message for n in app._notifications]
        assert any("is not valid JSON" in n for n in notes)


def _settled(app_factory):
    async def run_before(pilot) -> None:
        await settle(pilot.app, pilot)
        await pilot.press("plus", "plus")
        await settle(pilot.app, pilot)

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_half_block_snapshot(snap_compare, sample_dir, size):
    assert snap_compare(make_app(sample_dir), terminal_size=size, run_before=_settled(None))


async def test_a_narrow_terminal_gives_the_slide_every_column(sample_dir):
    """Resized to 40x10 the 30-column side panel left the slide 10 columns (and showed only its
    minimap): below 60 columns the panel is hidden and the slide fills the width; back at a
    wide size the panel returns."""
    app = make_app(sample_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        side = screen.query_one("#viewer-side")
        assert side.display and screen.slide_view.size.width == 100 - 30
        await pilot.resize_terminal(40, 10)
        await settle(app, pilot)
        assert not side.display and screen.slide_view.size.width == 40
        await pilot.press("n")  # the keys still work without the panel
        await settle(app, pilot)
        assert screen.slide_view.overlays.selected is not None
        await pilot.resize_terminal(100, 30)
        await settle(app, pilot)
        assert side.display and screen.slide_view.size.width == 100 - 30


async def test_a_long_slide_name_is_cut_before_the_status_after_it(sample_dir, tmp_path):
    """At 80 columns the status line wrapped at a space after the name and showed its first
    line, "Ünïcødé 肝臓 slide … .svs · 4,096×3,072 px ·": the level read, "reading N tiles…"
    and the cells' note went unseen, with nothing to say the line was cut."""
    name = "Ünïcødé 肝臓 slide with a rather long file name from the scanner.svs"
    (tmp_path / name).symlink_to(sample_dir / "s.svs")
    screen = ViewerScreen(
        tmp_path / name, cells=sample_dir / "cells.geojson", protocol="halfcell", standalone=True
    )
    app = ViewerApp(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        first = screen_text(app).splitlines()[0].strip()
        assert first.startswith("Ünïcødé 肝臓 slide") and "… · 4,096×3,072 px · " in first
        assert first.endswith(("thumbnail", "level 0", "level 1", "level 2")), first
        await pilot.press(*["plus"] * 7)  # to a level of the file
        await settle(app, pilot)
        first = screen_text(app).splitlines()[0].strip()
        assert "… · 4,096×3,072 px · level" in first, first
