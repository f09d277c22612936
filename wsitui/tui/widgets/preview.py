"""Job preview images through textual-image: sixel / kitty (TGP) / half-block, or forced."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from textual.widget import Widget

# textual-image asks the terminal about graphics support when imported, which must happen
# before Textual takes over the terminal: importing this module early (app.py does) does that.
# The probe runs first so that a 0×0 pty or a silent terminal cannot crash or scribble on it.
from wsitui.tui.terminal_probe import probe_cell_size

probe_cell_size()

from textual_image.widget import HalfcellImage, SixelImage, TGPImage  # noqa: E402 (after the probe)
from textual_image.widget import Image as AutoImage  # noqa: E402

from wsitui.tui.widgets.sixel import XtermSixelImage  # noqa: E402

ImageProtocol = Literal["auto", "sixel", "tgp", "halfcell"]
_CLASSES: dict[str, type[Widget]] = {
    # The automatic choice, with our sixel widget when the terminal speaks sixel.
    "auto": XtermSixelImage if AutoImage is SixelImage else AutoImage,
    "sixel": XtermSixelImage,
    "tgp": TGPImage,
    "halfcell": HalfcellImage,
}


def image_class(protocol: ImageProtocol) -> type[Widget]:
    return _CLASSES[protocol]


def image_widget(path: Path, protocol: ImageProtocol = "auto", **kwargs: str) -> Widget:
    return image_class(protocol)(path, **kwargs)
