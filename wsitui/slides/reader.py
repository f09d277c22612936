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
* Pillow for plain PNG / JPEG / BMP / (non-tiled) TIFF up to `max_plain_pixels`. Opening reads
  the header only (size, mode; for PNG also the chunk CRCs, which catches truncated files without
  decoding); the pixels are decoded on the first read, then held with a small 4x pyramid.

Whole-level and reduced reads (`read_level`, `read_level_scaled`, `thumbnail`) go block by block
(at most READ_BLOCK x READ_BLOCK level pixels per read), so a slide without a coarse level (a
single-level tiled TIFF) costs the output plus a few blocks of memory, not the whole level.

Every failure to open or read is a SlideError with a one-line message.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
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
# Budgets checked from headers, before anything is allocated or handed to OpenSlide (which
# aborts the whole process when GLib cannot allocate). The biggest real scans are ~200k x 100k.
MAX_SLIDE_PIXELS = 2**35  # any page/level: ~34 Gpx, e.g. 185,000 x 185,000
MAX_TILE_PIXELS = 4096 * 4096  # one stored tile is decoded whole: 48 MB of RGB at this limit
OPENSLIDE_CACHE_BYTES = 128 * 2**20
TILE_CACHE_BYTES = 64 * 2**20  # decoded tifffile tiles per reader (overlapping reads reuse)
MAX_REGION_PIXELS = 2**26  # one read_region (256 MB as RGBA); larger requests are a caller bug
READ_BLOCK = 2048  # side of the largest region read_level_scaled asks the backend for at once
SCALED_READ_WORKERS = min(4, os.cpu_count() or 1)  # blocks decoded at once (tifffile frees GIL)
PLAIN_STRIP_ROWS = 1024  # rows converted at a time when a plain image is not RGB already
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

    def _read_level_px(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """A region addressed in `level` pixels (backends override to skip level-0 rounding)."""
        ds = self.level_downsamples[level]
        return self._read(round(x * ds), round(y * ds), level, w, h)

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
        """A whole level as one array, read block by block (memory: the level itself)."""
        return self.read_level_scaled(level, self.level_dimensions[level])

    def read_level_scaled(
        self,
        level: int,
        size: tuple[int, int],
        on_block: Callable[[int, int], None] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """The whole of `level` area-averaged to `size` (w, h), as (h, w, 3) uint8.

        rows: only output rows [r0, r1) of that image, as (r1 - r0, w, 3): a caller can read
        the image band by band (and keep finished bands) and get the same pixels.

        Read in blocks of at most READ_BLOCK x READ_BLOCK level pixels, each reduced on its own
        and pasted into the output, so peak memory is the output plus a few blocks however big
        the level is. Integer factors give exact rounded box means (PIL reduce), so the block
        layout cannot show; other factors use PIL's BOX resize with each block's exact
        fractional source box, equal to resizing the whole level up to PIL's fixed-point
        rounding (+-1).

        on_block(done, total) is called in this thread after each block; an exception it raises
        (e.g. a job's cancel) stops the read, dropping the blocks not yet started.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(
                f"level {level} does not exist in {quoted(self.path)}: use 0-{self.level_count - 1}"
            )
        lw, lh = self.level_dimensions[level]
        tw, th = (int(v) for v in size)
        if tw < 1 or th < 1:
            raise ValueError(f"output size {tw}x{th} is invalid: need at least 1x1")
        r0, r1 = (0, th) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= r0 < r1 <= th:
            raise ValueError(f"rows {r0}-{r1} are invalid for an output {th} rows high")
        fx, fy = lw / tw, lh / th
        if fx > READ_BLOCK - 1 or fy > READ_BLOCK - 1:
            # One output pixel would span more than a block: go through an intermediate m times
            # the output, then take exact m x m means, so no read is bigger than a block.
            m = math.ceil(max(fx, fy) / (READ_BLOCK // 2))
            mid = self.read_level_scaled(level, (tw * m, th * m), on_block, (r0 * m, r1 * m))
            return np.asarray(Image.fromarray(mid).reduce(m))
        bw, bh = _block_out(fx), _block_out(fy)
        kx, ky = (int(fx), int(fy)) if fx.is_integer() and fy.is_integer() else (0, 0)
        blocks = [
            (ox, oy, min(tw, ox + bw), min(r1, oy + bh))
            for oy in range(r0, r1, bh)
            for ox in range(0, tw, bw)
        ]

        def one(block: tuple[int, int, int, int]) -> np.ndarray:
            ox0, oy0, ox1, oy1 = block
            sx0, sy0 = ox0 * fx, oy0 * fy
            sx1, sy1 = min(ox1 * fx, lw), min(oy1 * fy, lh)  # float noise must not pass the edge
            rx0, ry0 = math.floor(sx0), math.floor(sy0)
            rx1, ry1 = min(lw, math.ceil(sx1)), min(lh, math.ceil(sy1))
            region = self._read_level_px(level, rx0, ry0, rx1 - rx0, ry1 - ry0)
            if region.shape[:2] == (oy1 - oy0, ox1 - ox0):
                return region  # factor 1: the block is the output
            if kx:  # the block is exactly (bw * kx, bh * ky) px: whole cells only
                return np.asarray(Image.fromarray(region).reduce((kx, ky)))
            box = (sx0 - rx0, sy0 - ry0, sx1 - rx0, sy1 - ry0)
            out = Image.fromarray(region).resize(
                (ox1 - ox0, oy1 - oy0), Image.Resampling.BOX, box=box
            )
            return np.asarray(out)

        if len(blocks) == 1:
            out = np.ascontiguousarray(one(blocks[0]))
            if on_block is not None:
                on_block(1, 1)
            return out
        out = np.empty((r1 - r0, tw, 3), np.uint8)
        workers = min(SCALED_READ_WORKERS, len(blocks))
        pool = ThreadPoolExecutor(workers, "wsitui-scaled")
        # A sliding window, not pool.map: workers stay at most `workers` blocks ahead of the
        # caller, so a cancel raised by on_block leaves at most that many blocks decoding.
        todo = iter(blocks)
        window: deque[tuple[tuple[int, int, int, int], Future[np.ndarray]]] = deque()

        def submit_next() -> None:
            block = next(todo, None)
            if block is not None:
                window.append((block, pool.submit(one, block)))

        try:
            for _ in range(workers):
                submit_next()
            done = 0
            while window:
                (ox0, oy0, ox1, oy1), future = window.popleft()
                out[oy0 - r0 : oy1 - r0, ox0:ox1] = future.result()
                done += 1
                if on_block is not None:
                    on_block(done, len(blocks))
                submit_next()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def thumbnail_plan(self, max_size: int | tuple[int, int] = 1024) -> tuple[int, tuple[int, int]]:
        """(level thumbnail() reads, (w, h) it returns) for max_size, without reading pixels."""
        mw, mh = (max_size, max_size) if isinstance(max_size, int) else max_size
        if mw < 1 or mh < 1:
            raise ValueError(f"thumbnail size {mw}x{mh} is invalid: need at least 1x1")
        w0, h0 = self.dimensions
        scale = max(w0 / mw, h0 / mh, 1.0)
        target = (max(1, round(w0 / scale)), max(1, round(h0 / scale)))
        return self.best_level_for_downsample(scale), target

    def thumbnail(self, max_size: int | tuple[int, int] = 1024) -> np.ndarray:
        """The whole slide fitting in max_size (w, h), aspect kept, area-averaged.

        Memory stays bounded even on a slide with no coarse level (see read_level_scaled), but
        then every level-0 tile is decoded.
        """
        level, target = self.thumbnail_plan(max_size)
        return self.read_level_scaled(level, target)

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


def _block_out(factor: float) -> int:
    """Output px per block side so that its source spans at most READ_BLOCK level px.

    With an integer factor the source is exactly READ_BLOCK wide, so blocks start on tile
    boundaries and no tile is decoded twice; otherwise one px is kept for the partial pixel.
    """
    if factor.is_integer():
        return max(1, READ_BLOCK // int(factor))
    return max(1, math.floor((READ_BLOCK - 1) / factor))


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


def check_pixel_budget(path: Path, w: int, h: int, where: str) -> None:
    """SlideError when a page or level declares more than MAX_SLIDE_PIXELS."""
    if w * h > MAX_SLIDE_PIXELS:
        raise SlideError(
            f"slide {quoted(path)} declares {w:,}x{h:,} px ({where}), over the "
            f"{MAX_SLIDE_PIXELS:,} px limit for a slide; the file is damaged or not a slide"
        )


def check_tile_budget(path: Path, w: int, h: int, where: str) -> None:
    """SlideError when one stored tile is bigger than MAX_TILE_PIXELS (it is decoded whole)."""
    if w * h > MAX_TILE_PIXELS:
        side = math.isqrt(MAX_TILE_PIXELS)
        raise SlideError(
            f"slide {quoted(path)} has {w:,}x{h:,} px tiles ({where}), over the "
            f"{MAX_TILE_PIXELS:,} px limit per tile; export it again with tiles of at most "
            f"{side}x{side} px (256 or 512 is usual)"
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
                check_pixel_budget(path, page.imagewidth, page.imagelength, f"page {i}")
                if page.is_tiled:
                    check_tile_budget(path, page.tilewidth, page.tilelength, f"page {i}")
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
        try:
            for i, (w, h) in enumerate(self.level_dimensions):
                check_pixel_budget(path, w, h, f"level {i}")
                tw = self.properties.get(f"openslide.level[{i}].tile-width", "")
                th = self.properties.get(f"openslide.level[{i}].tile-height", "")
                if tw.isdigit() and th.isdigit():
                    check_tile_budget(path, int(tw), int(th), f"level {i}")
        except SlideError:
            self._osr.close()
            raise
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

    def _read_level_px(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        lvl = self._fast.get(level)
        if lvl is not None:  # tile grid in level px: no round trip through level-0 coordinates
            return self._read_tiles(lvl, level, x, y, w, h)
        return super()._read_level_px(level, x, y, w, h)

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
                    holes = len(pages) != 1 or 0 in pages[0].databytecounts
                    if self.vendor == "aperio" and holes:
                        # OpenSlide marks every Aperio tile over a missing (0-byte) one missing
                        # too, at all coarser levels, and paints those from the finer level;
                        # only level 0 simply shows a hole. tifffile would show the stored
                        # tiles, so coarser levels (and this one, unless it is 0) stay with
                        # OpenSlide. A level we cannot match to a page counts as having holes.
                        levels = {k: v for k, v in levels.items() if k < max(i, 1)}
                        break
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
    if head in _TIFF_MAGIC:
        _check_tiff_complete(p, st.st_size)
    try:
        vendor = openslide.OpenSlide.detect_format(p)
    except openslide.OpenSlideError:
        vendor = None
    if vendor is not None:
        return OpenSlideReader(p, vendor, fast_path=fast_path)
    return PillowReader(p, max_plain_pixels)
