"""One reader interface over OpenSlide, a tifffile fast path, tifffile pyramids, and Pillow.

`open_slide(path)` picks the backend:

* OpenSlide for whatever it recognises (SVS, generic tiled TIFF, NDPI, MRXS, ...):
  `openslide_reader.py`, with a tifffile fast path for Aperio SVS and generic tiled TIFF
  (`tiff.py`), pixel-identical and ~4x faster.
* tifffile alone for a tiled TIFF whose pyramid OpenSlide does not see (OME-TIFF SubIFD levels,
  reduced pages without the reduced flag), which OpenSlide would read as level 0 alone:
  `tifffile_reader.py`.
* Pillow for plain PNG / JPEG / BMP / (non-tiled) TIFF up to `max_plain_pixels`: `pillow_reader.py`.

What every backend shares (the interface, block-by-block reduced reads, compositing, pixel
budgets) is in `base.py`.

Every failure to open or read is a SlideError with a one-line message.
"""

from __future__ import annotations

import stat
from pathlib import Path

import openslide

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader.base import (
    MAX_REGION_PIXELS,
    MAX_SLIDE_PIXELS,
    MAX_TILE_PIXELS,
    READ_BLOCK,
    SCALED_READ_WORKERS,
    SLIDE_HINT,
    WHITE,
    SlideReader,
    canvas,
    check_pixel_budget,
    check_tile_budget,
    composite,
)
from wsitui.slides.reader.openslide_reader import OpenSlideReader, shared_openslide_cache
from wsitui.slides.reader.pillow_reader import DEFAULT_MAX_PLAIN_PIXELS, PillowReader
from wsitui.slides.reader.tiff import TIFF_MAGIC, check_aperio_levels, check_tiff_complete
from wsitui.slides.reader.tifffile_reader import TiffPyramidReader, pyramid_reader

__all__ = [
    "DEFAULT_MAX_PLAIN_PIXELS",
    "MAX_REGION_PIXELS",
    "MAX_SLIDE_PIXELS",
    "MAX_TILE_PIXELS",
    "READ_BLOCK",
    "SCALED_READ_WORKERS",
    "SLIDE_HINT",
    "WHITE",
    "OpenSlideReader",
    "PillowReader",
    "SlideReader",
    "TiffPyramidReader",
    "canvas",
    "check_pixel_budget",
    "check_tile_budget",
    "composite",
    "open_slide",
    "shared_openslide_cache",
]


def open_slide(
    path: Path | str,
    *,
    max_plain_pixels: int = DEFAULT_MAX_PLAIN_PIXELS,
    fast_path: bool = True,
) -> SlideReader:
    """Open a slide or plain image; raise SlideError (one line) if it cannot be read."""
    if not str(path).strip():  # Path("") is Path("."): it would be "a directory"
        raise SlideError("slide path is empty; give the path of a slide file")
    p = Path(path).expanduser()
    name = quoted(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SlideError(f"slide {name} does not exist; check the path") from None
    except OSError as e:
        raise SlideError(f"cannot read slide {name}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise SlideError(f"slide {name} is a directory; give the slide file itself")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO, socket or device: its size means nothing and reading it may block forever.
        raise SlideError(f"slide {name} is not a regular file; give a slide file")
    if st.st_size == 0:
        raise SlideError(f"slide {name} is empty (0 bytes); copy or export it again")
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise SlideError(f"cannot read slide {name}: {e.strerror or e}") from e
    tiled = check_tiff_complete(p, st.st_size) if head in TIFF_MAGIC else []
    try:
        vendor = openslide.OpenSlide.detect_format(p)
    except openslide.OpenSlideError:
        vendor = None
    if vendor == "aperio":
        check_aperio_levels(p, tiled)
    reader: SlideReader
    if vendor is not None:
        reader = OpenSlideReader(p, vendor, fast_path=fast_path)
        if fast_path:  # fast_path=False: OpenSlide alone, as it sees the file
            reader = pyramid_reader(reader) or reader
    else:
        reader = PillowReader(p, max_plain_pixels)
    reader.file_identity = (st.st_size, st.st_mtime_ns)
    return reader
