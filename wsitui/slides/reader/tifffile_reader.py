"""The tifffile backend: tiled TIFFs with a pyramid OpenSlide does not see.

OpenSlide reads a generic tiled TIFF as page 0 plus the top-level tiled pages flagged reduced
(NewSubfileType bit 0). Two common layouts hide the rest of the pyramid from it:

* OME-TIFF as QuPath, bfconvert and tifffile export it: levels 1.. are SubIFDs of page 0;
* generic pyramids whose reduced pages lack the reduced flag.

OpenSlide opened those as level 0 alone: the pixels were right, but a thumbnail, the tissue
mask and the viewer decoded the whole of level 0 and reduced it (seconds, not milliseconds, on a
gigapixel slide). `pyramid_reader` takes such a file over from its OpenSlideReader: the SubIFDs
of page 0 and (not in an OME-TIFF, whose top-level pages are other planes or series) the other
tiled top-level pages smaller than page 0 become levels, ordered by size, with their true
downsamples (OpenSlide's: the mean of the two axes' factors); pages reduced by different
factors across and down (a label, a macro) are not levels. Level 0 and every other level
OpenSlide lists are taken over only once the OpenSlide reader's fast path proved each
pixel-identical to OpenSlide (one unproven: OpenSlide keeps the file); the levels OpenSlide
misses are the file's own pages as stored. Everything OpenSlide already reads with its
pyramid (SVS, NDPI, MRXS, flagged generic pyramids) stays with OpenSlide, and so does a file
with a level tifffile does not decode the way the fast path does (not 3 x 8-bit RGB, or a
compression outside `FAST_COMPRESSIONS`): it opens as before, as level 0 alone.
"""

from __future__ import annotations

import math
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader.base import (
    SlideReader,
    check_pixel_budget,
    check_tile_budget,
    corrupt,
    stray_levels,
)
from wsitui.slides.reader.tiff import (
    MAX_PAGES,
    TiffLevel,
    TiffTiles,
    check_tile_count,
    fast_level,
    tifffile_log,
)

if TYPE_CHECKING:
    from wsitui.slides.reader.openslide_reader import OpenSlideReader

TILE_CACHE_BYTES = 64 * 2**20  # decoded tiles per reader, as the OpenSlide reader's fast path
# SubIFDs of page 0 looked at: a pyramid halving 185,000 px (MAX_SLIDE_PIXELS) to 1 px has 18
# levels. More is no pyramid we know (200,000 took 44 s to parse): OpenSlide keeps the file.
MAX_SUBIFDS = 64


def pyramid_reader(base: OpenSlideReader) -> TiffPyramidReader | None:
    """A TiffPyramidReader for `base`'s file when it holds levels OpenSlide does not list and
    every level OpenSlide lists (stray ones aside) is on base's fast path, proven identical to
    OpenSlide (then base is closed); else None, and base stays as it is.
    A damaged level (data past the end of the file, a pixel or tile budget broken, too few
    tiles) raises SlideError, with base closed."""
    if base.vendor != "generic-tiff":
        return None
    # Every level OpenSlide lists (and a job may read) must be one the fast path proved
    # pixel-identical to OpenSlide at open; the takeover reads them all with tifffile.
    if set(range(base.level_count)) - set(base.fast_levels) - base.stray_levels:
        return None
    try:
        levels = find_levels(base.path, base.level_dimensions)
    except SlideError:
        base.close()
        raise
    if levels is None:
        return None
    reader = TiffPyramidReader(base, levels)
    base.close()
    return reader


def find_levels(path: Path, listed: tuple[tuple[int, int], ...]) -> list[TiffLevel] | None:
    """The levels of a tiled TIFF (level 0 first), or None when OpenSlide lists them all
    (`listed`: its level sizes), tifffile cannot decode level 0 on the fast path, or page 0
    has more than MAX_SUBIFDS SubIFDs."""
    size = path.stat().st_size
    try:
        with tifffile_log() as log, tifffile.TiffFile(path) as tif:
            page0 = tif.pages[0]
            if not isinstance(page0, tifffile.TiffPage) or not page0.is_tiled:
                return None
            found: list[tuple[str, tifffile.TiffPage]] = [("page 0", page0)]
            subifds = [int(v) for v in page0.subifds or ()]
            if len(subifds) > MAX_SUBIFDS or any(offset < 8 for offset in subifds):
                return None  # no pyramid we know (an offset into the header: 0, ...)
            for i, offset in enumerate(subifds):
                if offset >= size:
                    raise corrupt(
                        path,
                        f"SubIFD {i} of page 0 starts at byte {offset:,} but the file has "
                        f"{size:,} bytes",
                    )
            if subifds:
                subs = tifffile.TiffPages(page0, index=0)
                found += [(f"SubIFD {i} of page 0", p) for i, p in enumerate(subs)]
            if not tif.is_ome:
                for i, page in enumerate(tif.pages):
                    if i >= MAX_PAGES:
                        break
                    if i:
                        found.append((f"page {i}", page))  # type: ignore[arg-type]
            if log.messages:
                # Top-level pages logged nothing (check_tiff_complete refuses those): a SubIFD
                # tag tifffile skipped. Past the end of the file: damage. Otherwise (a data
                # type it does not know, ...) its decode of that level is in doubt, and level
                # 0 alone is what OpenSlide opened before: OpenSlide keeps the file.
                for i, offset in enumerate(subifds):
                    _check_tag_values(path, tif, offset, size, f"SubIFD {i} of page 0")
                return None
            return _pyramid(path, size, found, listed)
    except SlideError:
        raise
    except Exception as e:  # tifffile raises many types on damaged SubIFDs
        raise corrupt(path, f"{type(e).__name__}: {e}") from e


# Bytes per value of each TIFF data type (TIFF 6, BigTIFF); another type: tifffile skips the tag.
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_BYTES |= {16: 8, 17: 8, 18: 8}


def _check_tag_values(
    path: Path, tif: tifffile.TiffFile, offset: int, size: int, where: str
) -> None:
    """SlideError when the directory at `offset`, or a tag value it points to, ends past the
    end of the file (read raw: tifffile drops such a tag with a log message)."""
    bo, big = tif.byteorder, tif.is_bigtiff
    count_fmt, entry_fmt, inline = (bo + "Q", bo + "HHQQ", 8) if big else (bo + "H", bo + "HHII", 4)
    count_size, entry_size = struct.calcsize(count_fmt), struct.calcsize(entry_fmt)
    fh = tif.filehandle
    fh.seek(offset)
    head = fh.read(count_size)
    n = struct.unpack(count_fmt, head)[0] if len(head) == count_size else -1
    entries = fh.read(n * entry_size) if n > 0 else b""
    if n < 0 or len(entries) != n * entry_size or offset + count_size + len(entries) > size:
        raise corrupt(
            path, f"the directory of {where} runs past the end of the file ({size:,} bytes)"
        )
    for k in range(0, len(entries), entry_size):
        code, dtype, count, value = struct.unpack(entry_fmt, entries[k : k + entry_size])
        nbytes = count * _TYPE_BYTES.get(dtype, 0)
        if nbytes > inline and value + nbytes > size:
            raise corrupt(
                path,
                f"tag {code} of {where} ends at byte {value + nbytes:,} but the file has "
                f"{size:,} bytes",
            )


def _pyramid(
    path: Path,
    size: int,
    found: list[tuple[str, tifffile.TiffPage]],
    listed: tuple[tuple[int, int], ...],
) -> list[TiffLevel] | None:
    _, page0 = found[0]
    w0, h0 = int(page0.imagewidth), int(page0.imagelength)
    smaller = [
        (where, page)
        for where, page in found[1:]
        if isinstance(page, tifffile.TiffPage)
        and page.is_tiled
        and int(page.imagewidth) <= w0
        and int(page.imagelength) <= h0
        and (int(page.imagewidth), int(page.imagelength)) != (w0, h0)
    ]
    smaller.sort(key=lambda wp: -int(wp[1].imagewidth) * int(wp[1].imagelength))
    pages, dims = [found[0]], [(w0, h0)]
    for where, page in smaller:
        d = (int(page.imagewidth), int(page.imagelength))
        if d not in dims:  # the first page of a size (SubIFDs come first)
            pages.append((where, page))
            dims.append(d)
    stray = stray_levels(tuple(dims))
    pages = [wp for i, wp in enumerate(pages) if i not in stray]
    if {(int(p.imagewidth), int(p.imagelength)) for _, p in pages} <= set(listed):
        return None  # OpenSlide lists every level: nothing to take over
    levels = []
    for where, page in pages:
        w, h = int(page.imagewidth), int(page.imagelength)
        check_pixel_budget(path, w, h, where)
        check_tile_budget(path, int(page.tilewidth), int(page.tilelength), where)
        check_tile_count(path, page, where)
        ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(page.databytecounts, np.int64)
        if len(ends) and int(ends.max()) > size:
            raise corrupt(
                path,
                f"image data of {where} ends at byte {int(ends.max()):,} but the file has "
                f"{size:,} bytes",
            )
        lvl = fast_level(page)
        if lvl is None:
            if not levels:
                return None  # level 0 must decode here; OpenSlide keeps the file
            continue  # a level tifffile does not decode as OpenSlide would: not used
        levels.append(lvl)
    return levels if len(levels) > 1 else None


class TiffPyramidReader(SlideReader):
    """A tiled TIFF read with tifffile at every level (see the module docstring).

    Thread-safe like the OpenSlide reader's fast path: tiles come from `os.pread` and a
    locked cache (TiffTiles); close() when no read is in flight.
    """

    def __init__(self, base: OpenSlideReader, levels: list[TiffLevel]) -> None:
        self.path = base.path
        self.vendor = base.vendor
        self.backend = "tifffile"
        self.mpp = base.mpp
        self.background = base.background
        w0, h0 = levels[0].width, levels[0].height
        self.level_dimensions = tuple((lvl.width, lvl.height) for lvl in levels)
        self.level_downsamples = tuple((w0 / lvl.width + h0 / lvl.height) / 2 for lvl in levels)
        props = {k: v for k, v in base.properties.items() if not k.startswith("openslide.level")}
        props["openslide.level-count"] = str(len(levels))
        for i, (lvl, ds) in enumerate(zip(levels, self.level_downsamples, strict=True)):
            props[f"openslide.level[{i}].width"] = str(lvl.width)
            props[f"openslide.level[{i}].height"] = str(lvl.height)
            props[f"openslide.level[{i}].downsample"] = repr(ds)
            props[f"openslide.level[{i}].tile-width"] = str(lvl.tile_w)
            props[f"openslide.level[{i}].tile-height"] = str(lvl.tile_h)
        self.properties = props
        self._levels = tuple(levels)
        self._lock = threading.Lock()
        self._closed = False
        self._tiff = TiffTiles(self.path, self.background, TILE_CACHE_BYTES)

    @property
    def associated_images(self) -> tuple[str, ...]:
        return ()

    def associated_image(self, name: str) -> np.ndarray:
        raise SlideError(f"slide {quoted(self.path)} has no associated image {name!r} (has: none)")

    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        # A level-0 location on a reduced level: the nearest level pixel (OpenSlide would
        # interpolate a fraction). Level px p -> round(p * ds) -> p again for every ds >= 1.
        ds = self.level_downsamples[level]
        lx, ly = math.floor(x / ds + 0.5), math.floor(y / ds + 0.5)
        return self._read_level_px(level, lx, ly, w, h)

    def _read_level_px(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._closed:
            raise SlideError(f"slide {quoted(self.path)} is closed; open it again")
        return self._tiff.read(self._levels[level], level, x, y, w, h)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tiff.close()
