"""Job preview images through textual-image: sixel / kitty (TGP) / half-block, or forced."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from textual.widget import Widget

# textual-image asks the terminal about graphics support when imported, which must happen
# before Textual takes over the terminal: importing this module early (app.py does) does that.
from textual_image.widget import HalfcellImage, SixelImage, TGPImage
from textual_image.widget import Image as AutoImage

ImageProtocol = Literal["auto", "sixel", "tgp", "halfcell"]
_CLASSES = {"auto": AutoImage, "sixel": SixelImage, "tgp": TGPImage, "halfcell": HalfcellImage}


def image_widget(path: Path, protocol: ImageProtocol = "auto", **kwargs: str) -> Widget:
    return _CLASSES[protocol](path, **kwargs)  # type: ignore[no-any-return]
