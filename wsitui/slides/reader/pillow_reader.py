"""The Pillow backend: plain PNG / JPEG / BMP / (non-tiled) TIFF up to `max_plain_pixels`.

Opening reads the header only (size, mode; for PNG also the chunk CRCs, which catches truncated
files without decoding); the pixels are decoded on the first read, then held with a small 4x
pyramid.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader.base import (
    SLIDE_HINT,
    WHITE,
    SlideReader,
    canvas,
    composite,
    mean_positive,
)

DEFAULT_MAX_PLAIN_PIXELS = 100_000_000
PLAIN_STRIP_ROWS = 1024  # rows converted at a time when a plain image is not RGB already
_PLAIN_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP"}  # MPO: JPEG from cameras
_PLAIN_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}


class PillowReader(SlideReader):
    """A plain image: header checked at open, pixels decoded on the first read.

    Opening is cheap (a preflight `open_slide(path).close()` decodes nothing); the decoded image
    and a 4x pyramid are then held as PIL images (one copy of the pixels, cropped per read).
    """

    def __init__(self, path: Path, max_pixels: int = DEFAULT_MAX_PLAIN_PIXELS) -> None:
        self.path = path
        self.vendor = None
        self.backend = "pillow"
        self.mpp = None
        self.background = WHITE
        self._max_pixels = max_pixels
        with self._open() as img:
            # Everything here comes from the header; nothing is decoded yet.
            name = quoted(path)
            if img.format not in _PLAIN_FORMATS:
                raise SlideError(
                    f"{name} is a {img.format} image, which wsitui does not read; {SLIDE_HINT}"
                )
            w, h = img.size
            if w * h > max_pixels:
                raise SlideError(
                    f"image {name} has {w * h:,} pixels, over the {max_pixels:,} limit for plain "
                    "images; convert it to a tiled pyramidal TIFF"
                )
            if img.mode not in _PLAIN_MODES:
                raise SlideError(
                    f"image {name} has pixel mode {img.mode} (e.g. 16-bit or float), which wsitui "
                    "does not read; convert it to 8-bit RGB"
                )
            if img.format == "PNG":
                # Chunk CRCs catch a truncated or damaged PNG at open, at the cost of reading
                # the file but without inflating or decoding any pixel data.
                try:
                    img.verify()
                except (OSError, ValueError, SyntaxError, EOFError) as e:
                    raise self._corrupt(e) from e
            self.properties = {"pillow.format": img.format, "pillow.mode": img.mode}
            if img.format == "TIFF":
                self.mpp = _tiff_mpp(img)
        dims = [(w, h)]
        while max(dims[-1]) // 4 >= 256:
            dims.append((-(-dims[-1][0] // 4), -(-dims[-1][1] // 4)))  # Image.reduce rounds up
        self.level_dimensions = tuple(dims)
        self.level_downsamples = tuple(w / d[0] for d in dims)
        self._levels: list[Image.Image] | None = None
        self._load_lock = threading.Lock()
        self._closed = False

    def _open(self) -> Image.Image:
        name = quoted(self.path)
        try:
            with warnings.catch_warnings():
                # Our own limit (checked from the header) decides; Pillow's warning is noise.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return Image.open(self.path)
        except Image.DecompressionBombError as e:
            # Pillow refuses beyond 2x its own limit before we see the size; it names the size.
            m = re.search(r"\((\d+) pixels\)", str(e))
            count = f"{int(m.group(1)):,} pixels" if m else "more pixels than Pillow allows"
            raise SlideError(
                f"image {name} has {count}, over the {self._max_pixels:,} limit for plain "
                "images; convert it to a tiled pyramidal TIFF"
            ) from e
        except UnidentifiedImageError as e:
            raise SlideError(
                f"{name} is not a slide image OpenSlide or Pillow can read; {SLIDE_HINT}"
            ) from e
        except OSError as e:
            raise SlideError(f"cannot read {name}: {e.strerror or e}") from e

    def _corrupt(self, e: BaseException) -> SlideError:
        return SlideError(f"image {quoted(self.path)} is truncated or corrupt: {e}")

    def _pixels(self) -> list[Image.Image]:
        """The decoded pyramid, decoding it on first use (once, whichever thread gets here)."""
        levels = self._levels
        if levels is not None:
            return levels
        with self._load_lock:
            if self._closed:
                raise SlideError(f"image {quoted(self.path)} is closed; open it again")
            if self._levels is None:
                self._levels = self._decode()
            return self._levels

    def _decode(self) -> list[Image.Image]:
        img = self._open()
        keep = False  # close() frees the pixels too, so an RGB image we keep is not closed
        try:
            if img.size != self.level_dimensions[0] or img.mode != self.properties["pillow.mode"]:
                raise SlideError(
                    f"image {quoted(self.path)} changed since it was opened; open it again"
                )
            try:
                img.load()
                rgb = _plain_to_rgb(img)
            except (OSError, ValueError, SyntaxError) as e:
                raise self._corrupt(e) from e
            if rgb is img and getattr(img, "fp", None) is not None:
                # Pillow keeps multi-frame files (TIFF, MPO) open after load(); a copy lets us
                # close the file. Single-frame ones are closed already, so no copy is needed.
                rgb = img.copy()
            keep = rgb is img
        finally:
            if not keep:
                img.close()
        levels = [rgb]
        for w, h in self.level_dimensions[1:]:
            levels.append(levels[-1].reduce(4))
            assert levels[-1].size == (w, h), "pyramid size differs from the one given at open"
        return levels

    @property
    def associated_images(self) -> tuple[str, ...]:
        return ()

    def associated_image(self, name: str) -> np.ndarray:
        raise SlideError(f"image {quoted(self.path)} has no associated image {name!r} (has: none)")

    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        return self._read_level_px(level, math.floor(x / ds), math.floor(y / ds), w, h)

    def _read_level_px(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._closed:
            raise SlideError(f"image {quoted(self.path)} is closed; open it again")
        img = self._pixels()[level]
        out = canvas(h, w, self.background)
        ax, ay = max(x, 0), max(y, 0)
        bx, by = min(x + w, img.width), min(y + h, img.height)
        if ax < bx and ay < by:
            out[ay - y : by - y, ax - x : bx - x] = np.asarray(img.crop((ax, ay, bx, by)))
        return out

    def close(self) -> None:
        with self._load_lock:
            self._closed = True
            self._levels = None


def _plain_to_rgb(img: Image.Image) -> Image.Image:
    """A loaded plain image as RGB, transparency composited onto white.

    Converted in strips: a whole-image convert (and the uint16 compositing maths) would hold
    several full-size copies at once; this holds the source and the result only.
    """
    transparent = img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info
    if img.mode == "RGB" and not transparent:
        return img
    out = Image.new("RGB", img.size)
    for y0 in range(0, img.height, PLAIN_STRIP_ROWS):
        strip = img.crop((0, y0, img.width, min(img.height, y0 + PLAIN_STRIP_ROWS)))
        if transparent:
            part = Image.fromarray(composite(np.asarray(strip.convert("RGBA")), WHITE))
        else:
            part = strip.convert("RGB")
        out.paste(part, (0, y0))
    return out


_TIFF_UNIT_UM = {2: 25400.0, 3: 1e4}  # ResolutionUnit inch, centimeter -> µm


def _tiff_mpp(img: Image.Image) -> float | None:
    """µm/px from a (stripped) TIFF's resolution tags in inches or cm, as OpenSlide reads a
    tiled one's; None without a unit (tifffile's default XResolution 1, unit none)."""
    tags = getattr(img, "tag_v2", {})
    try:
        per = _TIFF_UNIT_UM.get(int(tags.get(296, 0)))  # no unit tag: no size, as OpenSlide
    except (TypeError, ValueError):
        return None
    if per is None:
        return None
    return mean_positive([tags.get(282), tags.get(283)], lambda v: per / v)
