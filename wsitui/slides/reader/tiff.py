"""tifffile pieces: the completeness check run on every TIFF before OpenSlide sees it, and
the tile geometry, tile cache, page test and tile reads of the fast path (`OpenSlideReader`
and `TiffPyramidReader` use them)."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader.base import canvas, check_pixel_budget, check_tile_budget, corrupt

FAST_COMPRESSIONS = {1, 5, 7, 8, 32773, 32946}  # none, LZW, JPEG, deflate, packbits, deflate
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
MAX_PAGES = 200  # top-level pages looked at: enough for any pyramid; OME stacks can have thousands


class LogCapture(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False  # swallow: the caller turns them into one SlideError line


@contextmanager
def tifffile_log() -> Iterator[LogCapture]:
    """tifffile logs warnings about broken files; collect them instead of printing."""
    cap = LogCapture()
    logger = logging.getLogger("tifffile")
    logger.addFilter(cap)
    try:
        yield cap
    finally:
        logger.removeFilter(cap)


def check_tiff_complete(path: Path, file_size: int) -> list[tuple[int, int, int]]:
    """Refuse TIFFs whose page list or tile data runs past the end of the file.

    Returns (page index, width, height) of the tiled pages, in file order.
    """
    tiled: list[tuple[int, int, int]] = []
    try:
        with tifffile_log() as log, tifffile.TiffFile(path) as tif:
            pages = []
            for i, page in enumerate(tif.pages):
                if i >= MAX_PAGES:
                    break
                pages.append(page)
            if log.messages:  # e.g. "<tifffile.TiffPages @8> invalid page offset 1517592"
                msg = re.sub(r"^<[^>]*>\s*", "", log.messages[0])
                raise corrupt(path, f"{msg} (the file has {file_size:,} bytes)")
            for i, page in enumerate(pages):
                if not isinstance(page, tifffile.TiffPage):
                    continue
                check_pixel_budget(path, page.imagewidth, page.imagelength, f"page {i}")
                if page.is_tiled:
                    tiled.append((i, int(page.imagewidth), int(page.imagelength)))
                    check_tile_budget(path, page.tilewidth, page.tilelength, f"page {i}")
                    if i == 0:
                        _check_samples(path, page)
                    check_tile_count(path, page, f"page {i}")
                ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(
                    page.databytecounts, np.int64
                )
                if len(ends) and int(ends.max()) > file_size:
                    raise corrupt(
                        path,
                        f"image data of page {i} ends at byte {int(ends.max()):,} but the file "
                        f"has {file_size:,} bytes",
                    )
    except SlideError:
        raise
    except Exception as e:  # tifffile raises many types on garbage input
        raise corrupt(path, f"{type(e).__name__}: {e}") from e
    return tiled


def check_aperio_levels(path: Path, tiled: list[tuple[int, int, int]]) -> None:
    """OpenSlide takes every tiled page of an Aperio SVS as a pyramid level, in file order,
    and refuses the file when one is bigger than the level before it (a label, macro or
    thumbnail written tiled): it printed a GLib warning and said 'Unsupported or missing
    image file', which read as 'truncated or corrupt ... copy it again'. Refused here, before
    OpenSlide sees it, naming the page and the fix."""
    if not tiled:
        return
    _, w0, h0 = tiled[0]
    prev = tiled[0]
    for page in tiled[1:]:
        i, w, h = page
        # OpenSlide's downsample of a level: the mean of the two axes' ratios.
        if w and h and prev[1] and prev[2] and (w0 / w + h0 / h) < (w0 / prev[1] + h0 / prev[2]):
            raise SlideError(
                f"slide {quoted(path)} has a tiled page {i} ({w}x{h} px) after a smaller "
                f"level (page {prev[0]}, {prev[1]}x{prev[2]} px): OpenSlide takes every tiled "
                "page of an SVS as a pyramid level, so it cannot open the file (a label, macro "
                "or thumbnail written tiled?); write those pages as strips, or convert the "
                "slide (e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg)"
            )
        prev = page


def check_tile_count(path: Path, page: tifffile.TiffPage, where: str) -> None:
    """A page whose size needs more tiles than it lists (its width or height tag damaged or
    edited): reads past the list failed as an IndexError. Refused here in one line."""
    across = -(-int(page.imagewidth) // int(page.tilewidth))
    down = -(-int(page.imagelength) // int(page.tilelength))
    depth = -(-int(page.imagedepth or 1) // int(page.tiledepth or 1))
    planes = int(page.samplesperpixel) if int(page.planarconfig) == 2 else 1
    need, have = across * down * depth * planes, len(page.dataoffsets)
    if have < need:
        raise corrupt(
            path,
            f"{where} declares {page.imagewidth:,}x{page.imagelength:,} px, {need:,} "
            f"tiles, but lists {have:,}",
        )


_SAMPLE_KINDS = {1: "integer", 2: "signed integer", 3: "floating-point", 5: "complex", 6: "complex"}


def _check_samples(path: Path, page: tifffile.TiffPage) -> None:
    """OpenSlide (libtiff's RGBA reader) decodes 8- and 16-bit integer samples only: a tiled
    TIFF of others opens, then every read fails. Refused here, naming them and the fix."""
    bits, fmt = int(page.bitspersample), int(page.sampleformat)
    if bits <= 16 and fmt in (1, 2):
        return
    kind = _SAMPLE_KINDS.get(fmt, f"sample format {fmt}")
    raise SlideError(
        f"slide {quoted(path)} holds {bits}-bit {kind} samples, which OpenSlide cannot read; "
        "export it as an 8-bit RGB slide (e.g. vips tiffsave --tile --pyramid)"
    )


@dataclass(frozen=True, slots=True)
class TiffLevel:
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


class TileCache:
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


def fast_level(page: tifffile.TiffPage) -> TiffLevel | None:
    ok = (
        page.samplesperpixel == 3
        and page.bitspersample == 8
        and page.planarconfig == 1
        and page.imagedepth == 1
        and page.compression in FAST_COMPRESSIONS
        and (page.photometric == 2 or (page.photometric == 6 and page.compression == 7))
    )
    if not ok:
        return None
    # Load everything lazily-read now: tifffile's own file handle is not thread-safe.
    return TiffLevel(
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


class TiffTiles:
    """Regions of TiffLevels of one file, from their tiles.

    Tile bytes come from `os.pread` on one descriptor (no shared file position, so any number
    of threads read at once without a lock), decoding releases the GIL, and decoded tiles are
    kept in a TileCache (its own lock) so overlapping reads decode a tile once.
    """

    def __init__(self, path: Path, background: tuple[int, int, int], cache_bytes: int) -> None:
        self.path = path
        self.background = background
        self._cache = TileCache(cache_bytes)
        self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def tile(self, lvl: TiffLevel, level: int, idx: int) -> np.ndarray | None:
        """Tile `idx` of `lvl` (level number `level`, the cache key) decoded; None: empty."""
        hit, tile = self._cache.get((level, idx))
        if hit:
            return tile
        count = int(lvl.counts[idx])
        if count == 0:
            tile = None  # empty tile: no data, shows background like OpenSlide
        else:
            fd = self._fd
            if fd is None:
                raise SlideError(f"slide {quoted(self.path)} is closed; open it again")
            data = os.pread(fd, count, int(lvl.offsets[idx]))
            if len(data) != count:
                raise corrupt(self.path, f"tile {idx} of level {level} is cut short")
            try:
                arr = lvl.decode(data, idx, jpegtables=lvl.jpegtables)[0]
                tile = np.asarray(arr).reshape(lvl.tile_h, lvl.tile_w, 3)
            except Exception as e:
                # Decoders' messages can span lines; the error is one line.
                why = " ".join(str(e).split()) or type(e).__name__
                raise corrupt(self.path, f"tile {idx} of level {level}: {why}") from e
        self._cache.put((level, idx), tile)
        return tile

    def read(self, lvl: TiffLevel, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """(h, w, 3) uint8 at level px (x, y) of `lvl`; outside it: background."""
        out = canvas(h, w, self.background)
        ax, ay = max(x, 0), max(y, 0)
        bx, by = min(x + w, lvl.width), min(y + h, lvl.height)
        if ax >= bx or ay >= by:
            return out
        for row in range(ay // lvl.tile_h, (by - 1) // lvl.tile_h + 1):
            for col in range(ax // lvl.tile_w, (bx - 1) // lvl.tile_w + 1):
                tile = self.tile(lvl, level, row * lvl.tiles_across + col)
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
        """Close the descriptor; call when no read is in flight. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
