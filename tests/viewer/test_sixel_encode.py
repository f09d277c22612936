"""The fast sixel encoder: its output decodes back to exactly the quantised picture.

The decoder here is strict: the string must be a DCS sixel (`ESC P ... q`, raster attributes,
`ESC \\`), every byte of the body must be a colour definition/select, a sixel, a repeat, `$` or
`-`, and it paints like xterm (a definition does not select; painting starts on register 3).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from wsitui.tui.widgets.sixel_encode import encode, encode_indexed, percent, quantise

TOKEN = re.compile(r"#(\d+)(?:;2;(\d+);(\d+);(\d+))?|!(\d+)([?-~])|([?-~])|(\$)|(-)")


def decode(sixel: str) -> np.ndarray:
    """(h, w, 3) of sixel percentages; -1 where nothing was painted."""
    head = re.match(r'\x1bP[\d;]*q"1;1;(\d+);(\d+)', sixel)
    assert head and sixel.endswith("\x1b\\"), "not a DCS sixel with raster attributes"
    w, h = int(head.group(1)), int(head.group(2))
    body = sixel[head.end() : -2]
    regs: dict[int, tuple[int, int, int]] = {}
    canvas = np.full((h, w, 3), -1, int)
    current, x, y, pos = 3, 0, 0, 0
    while pos < len(body):
        t = TOKEN.match(body, pos)
        assert t, f"bad sixel byte {body[pos]!r} at {pos}"
        pos = t.end()
        reg, r, g, b, count, rep, char, cr, nl = t.groups()
        if reg is not None:
            if r is not None:
                regs[int(reg)] = (int(r), int(g), int(b))
            else:
                current = int(reg)
        elif cr:
            x = 0
        elif nl:
            x, y = 0, y + 6
        else:
            n, c = (int(count), rep) if count else (1, char)
            bits = ord(c) - 0x3F
            assert x + n <= w, f"painted past the right edge at band {y // 6}"
            for row in range(6):
                if bits >> row & 1:
                    assert y + row < h, "painted below the raster height"
                    canvas[y + row, x : x + n] = regs[current]
            x += n
    return canvas


def expected(image: Image.Image) -> np.ndarray:
    q = quantise(image)
    return percent(q.palette)[q.index]


def pictures() -> dict[str, Image.Image]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:53, 0:97]
    smooth = np.stack([xx * 2, yy * 4, (xx + yy) % 256], -1).astype(np.uint8)
    noise = rng.integers(0, 256, (41, 67, 3), dtype=np.uint8)
    # A stained-tissue-like view: blobs of few colours with long equal runs (the `!N` path).
    blobs = np.full((64, 300, 3), 240, np.uint8)
    blobs[10:50, 20:280] = (200, 120, 180)
    blobs[:40, :90][(yy[:40, :90] - 20) ** 2 + (xx[:40, :90] - 45) ** 2 < 200] = (60, 20, 120)
    return {
        "smooth": Image.fromarray(smooth),
        "noise": Image.fromarray(noise),
        "blobs": Image.fromarray(blobs),
        "one pixel": Image.new("RGB", (1, 1), (9, 200, 30)),
        "one colour, 7 rows": Image.new("RGB", (1500, 7), (255, 255, 255)),
        "rgba": Image.fromarray(rng.integers(0, 256, (13, 11, 4), dtype=np.uint8), "RGBA"),
    }


@pytest.mark.parametrize("name", list(pictures()))
def test_decodes_to_the_quantised_picture(name: str) -> None:
    image = pictures()[name]
    decoded = decode(encode(image))
    assert (decoded >= 0).all(), "pixels left unpainted"
    assert np.array_equal(decoded, expected(image))


def test_runs_are_compressed_and_definitions_select() -> None:
    s = encode(Image.new("RGB", (1500, 12), (255, 255, 255)))
    assert "!1500~" in s  # two bands of one colour: one repeat each, not 1,500 chars
    assert len(s) < 80
    # xterm: a definition does not select (wsitui.tui.widgets.sixel), so each one is followed
    # by its select, and every band selects before it paints.
    assert re.search(r"#0;2;100;100;100#0", s)
    assert s.count("#0!1500~") == 2


def test_transparency_is_composited_on_the_background() -> None:
    clear = Image.new("RGBA", (4, 6), (255, 0, 0, 0))
    decoded = decode(encode(clear, background=(0, 0, 255, 1.0)))
    assert (decoded == (0, 0, 100)).all()


def test_fewer_colours_when_asked() -> None:
    image = pictures()["smooth"]
    q = quantise(image, colors=16)
    assert len(q.palette) <= 16
    assert np.array_equal(decode(encode_indexed(q)), percent(q.palette)[q.index])
