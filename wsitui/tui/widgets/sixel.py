"""Sixel previews that draw right in xterm: select each colour register after defining it.

textual-image's encoder defines a colour register the first time it uses it (`#N;2;R;G;B`) and
then paints, assuming the definition also selects the register. xterm (with `-ti vt340`) only
*defines* it: the pixels that follow are painted with whichever register was selected before.
At the top of an image that is xterm's start-up register (3): the first two bands, painted
before any plain `#N` select, came out as a solid band of register 3's colour, which for a
tissue preview is the overlay green. Further down every colour's first run in a band took the
previous colour (speckles at tissue edges). An explicit `#N` after each definition is what the
DEC spec requires and is harmless where a definition also selects.

Second, after the image textual-image moved the cursor to the row *below* the widget, while
Textual goes on writing the rest of the widget's last line (the cells right of the image, then
"\r\n") where it believes the cursor is. The padding landed a row too low, and when that row
was the screen's last (the full-screen preview, just above the footer) the "\n" scrolled the
whole screen up a line: the title vanished and a ghost footer stayed above the real one.

The encode itself is wsitui.tui.widgets.sixel_encode (PIL's quantizer + numpy bands, which
selects after each definition by construction): textual-image's Python band loop took ~300 ms
for a 1280 x 800-px slide view. `select_after_define` stays for textual-image's own output.

Check by eye in a real sixel terminal: `scripts/check_sixel.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from PIL import Image as PILImage
from rich.control import Control
from rich.segment import ControlType, Segment
from rich.style import Style
from textual.app import ComposeResult
from textual_image._sixel import BackgroundColor, SixelOptions
from textual_image.widget.sixel import Image as SixelImage
from textual_image.widget.sixel import _ImageSixelImpl, _NoopRenderable

from wsitui.tui.widgets.sixel_encode import MAX_COLORS, encode

_NULL_STYLE = Style()
_DEFINE = re.compile(r"#(\d+);2;\d+;\d+;\d+")


def select_after_define(sixel: str) -> str:
    """Follow every colour-register definition with a select of that register."""
    return _DEFINE.sub(lambda m: f"{m.group(0)}#{m.group(1)}", sixel)


class _SelectingSixelImpl(_ImageSixelImpl):
    def _image_to_sixels(
        self,
        image: PILImage.Image,
        sixel_options: SixelOptions | None = None,
        background: BackgroundColor | None = None,
    ) -> str:
        opts = sixel_options or SixelOptions()
        if opts.smooth:  # textual-image's spatial clean-up: its encoder handles it
            return select_after_define(super()._image_to_sixels(image, sixel_options, background))
        return encode(image, min(opts.colors, MAX_COLORS), opts.quantize, background)

    def _get_sixel_segments(self, sixel_data: str) -> Iterable[Segment]:
        region = self.screen.find_widget(self).visible_region
        return [
            Segment(Control.move_to(region.x, region.y).segment.text, style=_NULL_STYLE),
            Segment(sixel_data, style=_NULL_STYLE, control=((ControlType.CURSOR_FORWARD, 0),)),
            # Back to where Textual expects the cursor after this line's strip: the right edge
            # of the widget's *last* row (region.bottom is one past it).
            Segment(
                Control.move_to(region.right, region.bottom - 1).segment.text, style=_NULL_STYLE
            ),
        ]


class XtermSixelImage(SixelImage, Renderable=_NoopRenderable):
    """textual-image's sixel widget with both fixes above."""

    def compose(self) -> ComposeResult:
        yield _SelectingSixelImpl(self.image, self._sixel_options)
