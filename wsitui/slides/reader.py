"""One reader interface over OpenSlide, a tifffile fast path, and Pillow.

`open_slide(path)` picks the backend:

* OpenSlide for whatever it recognises (SVS, generic tiled TIFF, NDPI, MRXS, ...). All handles
  share one process-wide `OpenSlideCache` (per-handle caches grow RSS with the number of open
  slides). Transparent pixels (no data, outside the image) are composited onto the slide's
  `openslide.background-color` or white, never black. A handle is dead after an OpenSlide
  error, so a failed call reopens the slide once and retries, then raises SlideError.
* For Aperio SVS and generic tiled TIFF, levels that tifffile can decode are read with
  tifffile instead: tile bytes come from `os.pread` (no shared file position, so any number of
  threads read at once without a lock) and decoding releases the GIL. That is ~4x faster than
  OpenSlide and pixel-identical; identity is checked at open on one busy tile per level, and
  reads whose location does not fall on a level pixel (OpenSlide interpolates those) go to
  OpenSlide.
* Pillow for plain PNG / JPEG / BMP / (non-tiled) TIFF up to `max_plain_pixels`; the size is
  checked from the header, before decoding. A small 4x pyramid is built at open.

Every failure to open or read is a SlideError with a one-line message.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import numpy as np
import openslide
import tifffile
from PIL import Image, UnidentifiedImageError

from wsitui.slides.errors import SlideError, quoted

DEFAULT_MAX_PLAIN_PIXELS = 100_000_000
OPENSLIDE_CACHE_BYTES = 128 * 2**20
TILE_CACHE_BYTES = 64 * 2**20  # decoded tifffile tiles per reader (overlapping reads reuse)
MAX_REGION_PIXELS = 2**28  # one read_region; larger requests are a caller bug
WHITE = (255, 255, 255)

_FAST_VENDORS = {"aperio", "generic-tiff"}  # levels are plain TIFF tile grids
_FAST_COMPRESSIONS = {1, 5, 7, 8, 32773, 32946}  # none, LZW, JPEG, deflate, packbits, deflate
_PLAIN_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP"}  # MPO: JPEG from cameras
_PLAIN_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SLIDE_HINT = "give an SVS, tiled TIFF, NDPI, MRXS (or other OpenSlide format), PNG or JPEG file"

_T = TypeVar("_T")


class SlideReader(ABC):
    """Read-only access to one slide. read_region is safe to call from many threads."""

    path: Path
    vendor: str | None  # OpenSlide vendor ('aperio', 'generic-tiff', ...); None for Pillow
    backend: str  # 'openslide', 'tifffile+openslide' or 'pillow'
    level_dimensions: tuple[tuple[int, int], ...]  # (width, height) per level
    level_downsamples: tuple[float, ...]
    mpp: float | None  # µm per level-0 pixel, if the file says
    properties: Mapping[str, str]
    background: tuple[int, int, int]  # what transparent / out-of-image pixels become

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    @abstractmethod
    def associated_images(self) -> tuple[str, ...]:
        """Names of associated images ('label', 'macro', 'thumbnail', ...)."""

    @abstractmethod
    def associated_image(self, name: str) -> np.ndarray:
        """An associated image as (h, w, 3) uint8 RGB."""

    @abstractmethod
    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray: ...

    @abstractmethod
    def close(self) -> None:
        """Release the slide; call when no read is in flight. Idempotent."""

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """(h, w, 3) uint8 RGB of `size` (w, h) at `level`, top-left at level-0 `location`.

        Areas outside the image come back as `background`.
        """
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if not 0 <= level < self.level_count:
            raise ValueError(
                f"level {level} does not exist in {quoted(self.path)}: use 0-{self.level_count - 1}"
            )
        if w <= 0 or h <= 0 or w * h > MAX_REGION_PIXELS:
            raise ValueError(f"region size {w}x{h} is invalid: need 1 to {MAX_REGION_PIXELS:,} px")
        return self._read(x, y, level, w, h)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is <= `downsample` (OpenSlide's rule)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = i
        return best

    def read_level(self, level: int) -> np.ndarray:
        """A whole level as one array (meant for the small levels)."""
        w, h = self.level_dimensions[level]
        return self.read_region((0, 0), level, (w, h))

    def thumbnail(self, max_size: int | tuple[int, int] = 1024) -> np.ndarray:
        """The whole slide fitting in max_size (w, h), aspect kept, area-averaged."""
        mw, mh = (max_size, max_size) if isinstance(max_size, int) else max_size
        if mw < 1 or mh < 1:
            raise ValueError(f"thumbnail size {mw}x{mh} is invalid: need at least 1x1")
        w0, h0 = self.dimensions
        scale = max(w0 / mw, h0 / mh, 1.0)
        target = (max(1, round(w0 / scale)), max(1, round(h0 / scale)))
        img = self.read_level(self.best_level_for_downsample(scale))
        if (img.shape[1], img.shape[0]) == target:
            return img
        return np.asarray(Image.fromarray(img).resize(target, Image.Resampling.BOX))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"<{type(self).__name__} {self.path.name} {w}x{h} {self.backend} {self.vendor}>"


# ------------------------------------------------------------------------------- helpers


def composite(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Non-premultiplied RGBA (h, w, 4) uint8 -> RGB over `background` (rounded)."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.uint16)[..., None]
    bg = np.asarray(background, np.uint16)
    out = (rgba[..., :3].astype(np.uint16) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def canvas(h: int, w: int, background: tuple[int, int, int]) -> np.ndarray:
    """(h, w, 3) uint8 filled with background (numpy's per-pixel (3,) broadcast is ~100x slower)."""
    if background[0] == background[1] == background[2]:
        return np.full((h, w, 3), background[0], np.uint8)
    out = np.empty((h, w, 3), np.uint8)
    out[:] = np.tile(np.asarray(background, np.uint8), w).reshape(w, 3)
    return out


def _parse_background(props: Mapping[str, str]) -> tuple[int, int, int]:
    value = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR, "")
    try:
        if len(value) == 6:
            return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    except ValueError:
        pass
    return WHITE


def _parse_mpp(props: Mapping[str, str]) -> float | None:
    vals = []
    for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            v = float(props[key])
        except (KeyError, ValueError):
            continue
        if math.isfinite(v) and v > 0:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


_cache_lock = threading.Lock()
_shared_cache: openslide.OpenSlideCache | None = None


def shared_openslide_cache() -> openslide.OpenSlideCache:
    """The one OpenSlide tile cache every handle in this process uses."""
    global _shared_cache
    with _cache_lock:
        if _shared_cache is None:
            _shared_cache = openslide.OpenSlideCache(OPENSLIDE_CACHE_BYTES)
        return _shared_cache


class _LogCapture(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False  # swallow: the caller turns them into one SlideError line


@contextmanager
def _tifffile_log() -> Iterator[_LogCapture]:
    """tifffile logs warnings about broken files; collect them instead of printing."""
    cap = _LogCapture()
    logger = logging.getLogger("tifffile")
    logger.addFilter(cap)
    try:
        yield cap
    finally:
        logger.removeFilter(cap)


def _corrupt(path: Path, what: str) -> SlideError:
    return SlideError(
        f"slide {quoted(path)} is truncated or corrupt: {what}; copy or export the file again"
    )


def _check_tiff_complete(path: Path, file_size: int) -> None:
    """Refuse TIFFs whose page list or tile data runs past the end of the file."""
    try:
        with _tifffile_log() as log, tifffile.TiffFile(path) as tif:
            pages = []
            for i, page in enumerate(tif.pages):
                if i >= 200:  # enough to cover any pyramid; OME stacks can have thousands
                    break
                pages.append(page)
            if log.messages:  # e.g. "<tifffile.TiffPages @8> invalid page offset 1517592"
                msg = re.sub(r"^<[^>]*>\s*", "", log.messages[0])
                raise _corrupt(path, f"{msg} (the file has {file_size:,} bytes)")
            for i, page in enumerate(pages):
                if not isinstance(page, tifffile.TiffPage):
                    continue
                ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(
                    page.databytecounts, np.int64
                )
                if len(ends) and int(ends.max()) > file_size:
                    raise _corrupt(
                        path,
                        f"image data of page {i} ends at byte {int(ends.max()):,} but the file "
                        f"has {file_size:,} bytes",
                    )
    except SlideError:
        raise
    except Exception as e:  # tifffile raises many types on garbage input
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------- OpenSlide


@dataclass(frozen=True, slots=True)
class _TiffLevel:
    """A pyramid level that tifffile decodes: tile geometry plus byte ranges."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    tiles_across: int
    offsets: np.ndarray
    counts: np.ndarray
    jpegtables: bytes | None
    decode: Callable[..., Any]


class _TileCache:
    """Thread-safe LRU of decoded tiles bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> tuple[bool, np.ndarray | None]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True, self._items[key]
            return False, None

    def put(self, key: tuple[int, int], tile: np.ndarray | None) -> None:
        size = 0 if tile is None else tile.nbytes
        if size > self._max:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = tile
            self._bytes += size
            while self._bytes > self._max:
                _, old = self._items.popitem(last=False)
                self._bytes -= 0 if old is None else old.nbytes


class OpenSlideReader(SlideReader):
    def __init__(self, path: Path, vendor: str, *, fast_path: bool = True) -> None:
        self.path = path
        self.vendor = vendor
        self._lock = threading.Lock()
        self._closed = False
        self._generation = 0
        self._retired: list[openslide.OpenSlide] = []  # dead handles; closed with the reader
        try:
            self._osr = self._open_handle()
            osr = self._osr
            self.level_dimensions = tuple((int(w), int(h)) for w, h in osr.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in osr.level_downsamples)
            self.properties = dict(osr.properties)
            self._associated = tuple(osr.associated_images.keys())
        except openslide.OpenSlideError as e:
            raise _corrupt(path, str(e)) from e
        self.mpp = _parse_mpp(self.properties)
        self.background = _parse_background(self.properties)
        self._fd: int | None = None
        self._fast: dict[int, _TiffLevel] = {}
        self._tiles = _TileCache(TILE_CACHE_BYTES)
        if fast_path and vendor in _FAST_VENDORS:
            self._setup_fast_path()
        self.backend = "tifffile+openslide" if self._fast else "openslide"

    @property
    def fast_levels(self) -> tuple[int, ...]:
        """Levels read with tifffile (the rest go through OpenSlide)."""
        return tuple(sorted(self._fast))

    @property
    def associated_images(self) -> tuple[str, ...]:
        return self._associated

    def _open_handle(self) -> openslide.OpenSlide:
        osr = openslide.OpenSlide(self.path)
        osr.set_cache(shared_openslide_cache())
        return osr

    def _call(self, fn: Callable[[openslide.OpenSlide], _T]) -> _T:
        """Run fn on the handle; after an OpenSlide error reopen once and retry."""
        if self._closed:
            raise SlideError(f"slide {quoted(self.path)} is closed; open it again")
        osr, gen = self._osr, self._generation
        try:
            return fn(osr)
        except openslide.OpenSlideError:
            with self._lock:
                if self._closed:
                    raise SlideError(
                        f"slide {quoted(self.path)} is closed; open it again"
                    ) from None
                if self._generation == gen:  # first thread to see it: swap in a fresh handle
                    # Other threads may still be inside the dead handle: retire it, close later.
                    self._retired.append(self._osr)
                    try:
                        self._osr = self._open_handle()
                    except openslide.OpenSlideError as e:
                        raise _corrupt(self.path, f"reopening after a read error: {e}") from e
                    self._generation += 1
                osr = self._osr
            try:
                return fn(osr)
            except openslide.OpenSlideError as e:
                raise _corrupt(self.path, f"read failed twice: {e}") from e

    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        lvl = self._fast.get(level)
        if lvl is not None:
            ds = self.level_downsamples[level]
            lx, ly = x / ds, y / ds  # what OpenSlide computes; fractions mean interpolation
            if lx.is_integer() and ly.is_integer():
                return self._read_tiles(lvl, level, int(lx), int(ly), w, h)
        rgba = self._call(lambda osr: osr.read_region((x, y), level, (w, h)))
        return composite(np.asarray(rgba), self.background)

    def associated_image(self, name: str) -> np.ndarray:
        if name not in self._associated:
            have = ", ".join(self._associated) or "none"
            raise SlideError(
                f"slide {quoted(self.path)} has no associated image {name!r} (has: {have})"
            )
        img = self._call(lambda osr: osr.associated_images[name])
        return composite(np.asarray(img.convert("RGBA")), self.background)

    # -- tifffile fast path -----------------------------------------------------------------

    def _setup_fast_path(self) -> None:
        try:
            with _tifffile_log(), tifffile.TiffFile(self.path) as tif:
                candidates: dict[tuple[int, int], list[tifffile.TiffPage]] = {}
                for page in tif.pages:
                    if isinstance(page, tifffile.TiffPage) and page.is_tiled:
                        candidates.setdefault((page.imagewidth, page.imagelength), []).append(page)
                levels = {}
                for i, dims in enumerate(self.level_dimensions):
                    pages = candidates.get(dims, [])
                    if len(pages) == 1 and (lvl := self._fast_level(pages[0])) is not None:
                        levels[i] = lvl
        except Exception:  # any doubt about the file: OpenSlide alone reads it
            return
        if not levels:
            return
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._fast = levels
        # Prove identity on this file: the busiest tile of each level vs OpenSlide.
        for i, lvl in list(levels.items()):
            idx = int(np.argmax(lvl.counts))
            row, col = divmod(idx, lvl.tiles_across)
            x0, y0 = col * lvl.tile_w, row * lvl.tile_h
            w, h = min(lvl.tile_w, lvl.width - x0), min(lvl.tile_h, lvl.height - y0)
            ds = self.level_downsamples[i]
            try:
                ours = self._read_tiles(lvl, i, x0, y0, w, h)
                ref = self._call(
                    lambda osr, i=i, x0=x0, y0=y0, w=w, h=h, ds=ds: osr.read_region(
                        (round(x0 * ds), round(y0 * ds)), i, (w, h)
                    )
                )
                same = np.array_equal(ours, composite(np.asarray(ref), self.background))
            except Exception:
                same = False
            if not same:
                del self._fast[i]

    @staticmethod
    def _fast_level(page: tifffile.TiffPage) -> _TiffLevel | None:
        ok = (
            page.samplesperpixel == 3
            and page.bitspersample == 8
            and page.planarconfig == 1
            and page.imagedepth == 1
            and page.compression in _FAST_COMPRESSIONS
            and (page.photometric == 2 or (page.photometric == 6 and page.compression == 7))
        )
        if not ok:
            return None
        # Load everything lazily-read now: tifffile's own file handle is not thread-safe.
        return _TiffLevel(
            width=page.imagewidth,
            height=page.imagelength,
            tile_w=page.tilewidth,
            tile_h=page.tilelength,
            tiles_across=-(-page.imagewidth // page.tilewidth),
            offsets=np.asarray(page.dataoffsets, np.int64).copy(),
            counts=np.asarray(page.databytecounts, np.int64).copy(),
            jpegtables=page.jpegtables,
            decode=page.decode,
        )

    def _tile(self, lvl: _TiffLevel, level: int, idx: int) -> np.ndarray | None:
        hit, tile = self._tiles.get((level, idx))
        if hit:
            return tile
        count = int(lvl.counts[idx])
        if count == 0:
            tile = None  # empty tile: no data, shows background like OpenSlide
        else:
            assert self._fd is not None
            data = os.pread(self._fd, count, int(lvl.offsets[idx]))
            if len(data) != count:
                raise _corrupt(self.path, f"tile {idx} of level {level} is cut short")
            try:
                arr = lvl.decode(data, idx, jpegtables=lvl.jpegtables)[0]
            except Exception as e:
                raise _corrupt(self.path, f"tile {idx} of level {level}: {e}") from e
            tile = np.asarray(arr).reshape(lvl.tile_h, lvl.tile_w, 3)
        self._tiles.put((level, idx), tile)
        return tile

    def _read_tiles(
        self, lvl: _TiffLevel, level: int, x: int, y: int, w: int, h: int
    ) -> np.ndarray:
        if self._closed or self._fd is None:
            raise SlideError(f"slide {quoted(self.path)} is closed; open it again")
        out = canvas(h, w, self.background)
        ax, ay = max(x, 0), max(y, 0)
        bx, by = min(x + w, lvl.width), min(y + h, lvl.height)
        if ax >= bx or ay >= by:
            return out
        for row in range(ay // lvl.tile_h, (by - 1) // lvl.tile_h + 1):
            for col in range(ax // lvl.tile_w, (bx - 1) // lvl.tile_w + 1):
                tile = self._tile(lvl, level, row * lvl.tiles_across + col)
                if tile is None:
                    continue
                tx0, ty0 = col * lvl.tile_w, row * lvl.tile_h
                sx0, sy0 = max(ax, tx0), max(ay, ty0)
                sx1, sy1 = min(bx, tx0 + lvl.tile_w), min(by, ty0 + lvl.tile_h)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0
                ]
        return out

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for osr in [*self._retired, self._osr]:
                osr.close()
            self._retired.clear()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# -------------------------------------------------------------------------------- Pillow


class PillowReader(SlideReader):
    """A plain image held in memory, with a 4x pyramid for low-resolution reads."""

    def __init__(self, path: Path, max_pixels: int = DEFAULT_MAX_PLAIN_PIXELS) -> None:
        self.path = path
        self.vendor = None
        self.backend = "pillow"
        self.mpp = None
        self.background = WHITE
        name = quoted(path)
        try:
            with warnings.catch_warnings():
                # Our own limit (below) decides; Pillow's warning would only add noise.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(path)
        except Image.DecompressionBombError as e:
            # Pillow refuses beyond 2x its own limit before we see the size; it names the size.
            m = re.search(r"\((\d+) pixels\)", str(e))
            count = f"{int(m.group(1)):,} pixels" if m else "more pixels than Pillow allows"
            raise SlideError(
                f"image {name} has {count}, over the {max_pixels:,} limit for plain images; "
                "convert it to a tiled pyramidal TIFF"
            ) from e
        except UnidentifiedImageError as e:
            raise SlideError(
                f"{name} is not a slide image OpenSlide or Pillow can read; {SLIDE_HINT}"
            ) from e
        except OSError as e:
            raise SlideError(f"cannot read {name}: {e.strerror or e}") from e
        with img:
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
            try:
                img.load()
                if img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info:
                    rgb = composite(np.asarray(img.convert("RGBA")), WHITE)
                else:
                    rgb = np.asarray(img.convert("RGB"))
            except (OSError, ValueError, SyntaxError) as e:
                raise SlideError(f"image {name} is truncated or corrupt: {e}") from e
            self.properties = {"pillow.format": img.format, "pillow.mode": img.mode}
        levels = [np.ascontiguousarray(rgb)]
        while max(levels[-1].shape[:2]) // 4 >= 256:
            levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(4)))
        self._levels = levels
        self.level_dimensions = tuple((a.shape[1], a.shape[0]) for a in levels)
        self.level_downsamples = tuple(w / d[0] for d in self.level_dimensions)
        self._closed = False

    @property
    def associated_images(self) -> tuple[str, ...]:
        return ()

    def associated_image(self, name: str) -> np.ndarray:
        raise SlideError(f"image {quoted(self.path)} has no associated image {name!r} (has: none)")

    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        if self._closed:
            raise SlideError(f"image {quoted(self.path)} is closed; open it again")
        arr = self._levels[level]
        ds = self.level_downsamples[level]
        lx, ly = math.floor(x / ds), math.floor(y / ds)
        out = canvas(h, w, self.background)
        ax, ay = max(lx, 0), max(ly, 0)
        bx, by = min(lx + w, arr.shape[1]), min(ly + h, arr.shape[0])
        if ax < bx and ay < by:
            out[ay - ly : by - ly, ax - lx : bx - lx] = arr[ay:by, ax:bx]
        return out

    def close(self) -> None:
        self._closed = True
        self._levels = []


# ------------------------------------------------------------------------------ open_slide


def open_slide(
    path: Path | str,
    *,
    max_plain_pixels: int = DEFAULT_MAX_PLAIN_PIXELS,
    fast_path: bool = True,
) -> SlideReader:
    """Open a slide or plain image; raise SlideError (one line) if it cannot be read."""
    p = Path(path).expanduser()
    name = quoted(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SlideError(f"slide {name} does not exist; check the path") from None
    except OSError as e:
        raise SlideError(f"cannot read slide {name}: {e.strerror or e}") from e
    if p.is_dir():
        raise SlideError(f"slide {name} is a directory; give the slide file itself")
    if st.st_size == 0:
        raise SlideError(f"slide {name} is empty (0 bytes); copy or export it again")
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise SlideError(f"cannot read slide {name}: {e.strerror or e}") from e
    if head in _TIFF_MAGIC:
        _check_tiff_complete(p, st.st_size)
    try:
        vendor = openslide.OpenSlide.detect_format(p)
    except openslide.OpenSlideError:
        vendor = None
    if vendor is not None:
        return OpenSlideReader(p, vendor, fast_path=fast_path)
    return PillowReader(p, max_plain_pixels)
