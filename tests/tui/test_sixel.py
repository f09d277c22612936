"""Sixel previews decode to the image in xterm, whose colour definitions do not select.

The decoder below paints the way xterm 379 with `-ti vt340` does (seen with
scripts/check_sixel.py): `#N;2;R;G;B` only defines register N, `#N` selects it, and painting
starts with register 3 selected.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual_image._sixel import image_to_sixels

from tests.tui.conftest import make_app
from tests.tui.fakes import write_preview
from tests.tui.helpers import app_ready, settle, spec, wait_for
from wsitui.tui.screens.detail import JobDetailScreen
from wsitui.tui.widgets import sixel
from wsitui.tui.widgets.preview import image_class
from wsitui.tui.widgets.sixel import XtermSixelImage, select_after_define

XTERM_START_REGISTER = 3
pytestmark = pytest.mark.anyio


def decode_like_xterm(sixel: str) -> np.ndarray:
    header = re.match(r'\x1bP[\d;]*q"1;1;(\d+);(\d+)', sixel)
    assert header, "no raster attributes"
    width, height = int(header.group(1)), int(header.group(2))
    body = sixel[header.end() : sixel.rindex("\x1b\\")]
    registers: dict[int, tuple[int, int, int]] = {}
    canvas = np.full((height, width, 3), -1, int)
    current, x, band = XTERM_START_REGISTER, 0, 0
    for token in re.finditer(r"#(\d+)((?:;\d+){4})?|!(\d+)(.)|([?-~])|(\$)|(-)", body):
        reg, define, count, rep_char, char, cr, nl = token.groups()
        if reg is not None:
            if define:
                _, r, g, b = (int(v) for v in define[1:].split(";"))
                registers[int(reg)] = (r * 255 // 100, g * 255 // 100, b * 255 // 100)
            else:
                current = int(reg)
            continue
        if cr:
            x = 0
            continue
        if nl:
            x, band = 0, band + 6
            continue
        n, ch = (int(count), rep_char) if count else (1, char)
        bits = ord(ch) - 0x3F
        colour = registers.get(current, (0, 0, 0))
        for row in range(6):
            if bits & (1 << row) and band + row < height:
                canvas[band + row, x : x + n] = colour
        x += n
    return canvas


def preview_image(tmp_path) -> Image.Image:
    path = tmp_path / "preview.png"
    write_preview(path)
    return Image.open(path).convert("RGB")


def test_sixel_top_rows_are_the_image_not_a_band_of_another_colour(tmp_path):
    image = preview_image(tmp_path)
    ref = np.asarray(image).astype(int)
    decoded = decode_like_xterm(select_after_define(image_to_sixels(image)))
    # Every pixel painted, and close to the image (the encoder quantizes colours a little).
    assert (decoded >= 0).all()
    top = np.abs(decoded[:12] - ref[:12]).max()
    assert top <= 8, f"top rows differ by up to {top}"
    assert np.abs(decoded - ref).mean() < 2


def test_textual_image_alone_paints_the_top_band_wrong(tmp_path):
    # The reason for the fix: if textual-image starts selecting after defining, this fails
    # and XtermSixelImage can go.
    image = preview_image(tmp_path)
    decoded = decode_like_xterm(image_to_sixels(image))
    assert np.abs(decoded[:6] - np.asarray(image)[:6].astype(int)).max() > 50


async def test_the_sixel_widget_renders_with_the_fix(tmp_path):
    assert image_class("sixel") is XtermSixelImage
    write_preview(tmp_path / "preview.png")

    class Preview(App[None]):
        def compose(self) -> ComposeResult:
            yield XtermSixelImage(tmp_path / "preview.png")

    app = Preview()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        impl = app.query_one(XtermSixelImage).children[0]
        region = impl.region
        lines = impl.render_lines(Region(0, 0, impl.size.width, impl.size.height))
    text = "".join(seg.text for strip in lines for seg in strip)
    defined = re.findall(r"#(\d+);2;\d+;\d+;\d+(#\d+)?", text)
    assert defined and all(sel == f"#{reg}" for reg, sel in defined)
    # After the image the cursor goes back to the right edge of the widget's last row, where
    # Textual writes the rest of that line; one row lower, a widget on the screen's last free
    # row made the terminal scroll (the full-screen preview lost its title line).
    row, col = (int(v) for v in re.findall(r"\x1b\[(\d+);(\d+)H", text)[-1])
    assert (row - 1, col - 1) == (region.bottom - 1, region.right)


async def test_detail_preview_is_not_redrawn_by_the_clock(tmp_path, monkeypatch):
    # Each redraw of a sixel image first blanks the cells under it: a redraw every second
    # (the clock tick repainting the whole screen) made the preview flicker in xterm.
    draws: list[Region] = []
    real = sixel._SelectingSixelImpl.render_lines

    def counted(self: sixel._SelectingSixelImpl, crop: Region) -> list:
        draws.append(crop)
        return real(self, crop)

    monkeypatch.setattr(sixel._SelectingSixelImpl, "render_lines", counted)
    app, ex, clock = make_app(tmp_path / "data")
    app.image_protocol = "sixel"
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("d", ("mask", "A")))
        ex.release("mask")
        await settle(app, pilot, lambda: app.engine.job("alice", w.jobs[0].id).state.terminal)
        await pilot.press("tab", "enter")
        await pilot.pause()
        assert isinstance(app.screen, JobDetailScreen)
        await wait_for(pilot, lambda: bool(draws))
        before = len(draws)
        for _ in range(3):  # three ticks of the clock
            clock.now += 1
            await wait_for(pilot, lambda: app.now == clock.now)
        await pilot.pause()
        assert len(draws) == before
        await app.shutdown()
