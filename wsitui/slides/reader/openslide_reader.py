"""The OpenSlide backend: whatever OpenSlide recognises (SVS, generic tiled TIFF, NDPI, MRXS, ...).

Slides open at the same time share one `OpenSlideCache` (per-handle caches grow RSS with the
number of open slides). A cache serves OPENSLIDE_CACHE_HANDLES handles, then new ones get a
fresh cache and the old one is freed with its last handle: the decoded tiles of closed slides
are not kept, so RSS stays flat over a cohort of any size (one shared cache for ever kept up
to 128 MB of tiles of slides long closed, 0.5-1 MB a slide).

Transparent pixels are composited onto the slide's `openslide.background-color` or white,
never black. A handle is dead after an OpenSlide error, so a failed call reopens the slide once
and retries, then raises SlideError.

For Aperio SVS and generic tiled TIFF, levels that tifffile can decode are read with tifffile
instead (`tiff.py`): tile bytes come from `os.pread` (no shared file position, so any number of
threads read at once without a lock) and decoding releases the GIL. That is ~4x faster than
OpenSlide and pixel-identical; identity is checked at open on one busy tile per level, and
reads whose location does not fall on a level pixel (OpenSlide interpolates those) go to
OpenSlide.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import openslide
import tifffile

from wsitui.slides.errors import SlideError, quoted
from wsitui.slides.reader.base import (
    WHITE,
    SlideReader,
    check_pixel_budget,
    check_tile_budget,
    composite,
    corrupt,
    mean_positive,
    stray_levels,
)
from wsitui.slides.reader.tiff import TiffLevel, TiffTiles, fast_level, tifffile_log

OPENSLIDE_CACHE_BYTES = 128 * 2**20
OPENSLIDE_CACHE_HANDLES = 16  # handles one cache serves before new handles get a fresh one
TILE_CACHE_BYTES = 64 * 2**20  # decoded tifffile tiles per reader (overlapping reads reuse)

_FAST_VENDORS = {"aperio", "generic-tiff"}  # levels are plain TIFF tile grids

_T = TypeVar("_T")


_UNSUPPORTED_COMPRESSION = re.compile(r"Unsupported TIFF compression: (\d+)")


def _failure(path: Path, e: openslide.OpenSlideError, what: str = "") -> SlideError:
    """The SlideError for an OpenSlide error: tiles in a compression this OpenSlide cannot
    decode (JPEG 2000 as 34712, WebP, LZMA, ...) are named, with the fix; copying the file
    again, what 'truncated or corrupt' asks for, would change nothing. Else corrupt()."""
    m = _UNSUPPORTED_COMPRESSION.search(str(e))
    if m is None:
        return corrupt(path, f"{what}{e}")
    code = int(m.group(1))
    try:
        name = f"{tifffile.COMPRESSION(code).name} (TIFF compression {code})"
    except ValueError:
        name = f"TIFF compression {code}"
    return SlideError(
        f"slide {quoted(path)} stores its pixels as {name}, which OpenSlide cannot decode; "
        "convert it to JPEG, LZW or Deflate tiles "
        "(e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg)"
    )


def _parse_background(props: Mapping[str, str]) -> tuple[int, int, int]:
    value = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR, "")
    try:
        if len(value) == 6:
            return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    except ValueError:
        pass
    return WHITE


_RES_UNIT_UM = {"centimeter": 1e4, "inch": 25400.0}  # µm per TIFF ResolutionUnit
# Aperio's `|MPP = 0.25|` in a description OpenSlide did not take for Aperio's (it must start
# with "Aperio"): converters copy the fields without the first line.
_DESCRIPTION_MPP = re.compile(r"\|\s*MPP\s*=\s*([^|\s]+)")
_OME_PIXELS = re.compile(r"<(?:\w+:)?Pixels\b[^>]*>")
_OME_UNIT_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _parse_mpp(props: Mapping[str, str], vendor: str) -> float | None:
    """µm per level-0 px: OpenSlide's, else (Aperio and generic TIFF, whose first directory
    is level 0) the resolution tags in cm or inches, else an Aperio-style `|MPP = x` in a
    description not starting with "Aperio", else an OME-XML description's PhysicalSizeX/Y.
    OpenSlide reads the tags only for generic TIFF and the others never, so these slides
    came out as 'no pixel size' and the jobs assumed 0.5 µm/px."""
    own = mean_positive(
        [props.get(openslide.PROPERTY_NAME_MPP_X), props.get(openslide.PROPERTY_NAME_MPP_Y)],
        lambda v: v,
    )
    if own is not None or vendor not in _FAST_VENDORS:
        return own
    per = _RES_UNIT_UM.get(props.get("tiff.ResolutionUnit", ""))
    if per is not None:
        res = mean_positive(
            [props.get("tiff.XResolution"), props.get("tiff.YResolution")], lambda v: per / v
        )
        if res is not None:
            return res
    description = props.get("tiff.ImageDescription", "")
    m = _DESCRIPTION_MPP.search(description)
    if m is not None and (mpp := mean_positive([m.group(1)], lambda v: v)) is not None:
        return mpp
    m = _OME_PIXELS.search(description)
    if m is None:
        return None
    attrs = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(0)))
    sizes = [
        mean_positive([attrs.get(f"PhysicalSize{axis}")], lambda v, u=um: v * u)
        for axis in "XY"
        if (um := _OME_UNIT_UM.get(attrs.get(f"PhysicalSize{axis}Unit", "µm"))) is not None
    ]
    found = [v for v in sizes if v is not None]
    return sum(found) / len(found) if found else None


def _exact_tiles(lvl: TiffLevel, ds: float) -> np.ndarray:
    """Indices of the level's tiles whose top-left corner a level-0 location reaches exactly.

    OpenSlide takes a read's location in level-0 px and divides by the level's downsample; a
    fraction makes it interpolate. Real scanners' levels are floor(level 0 / 4^k) px, so the
    downsample is not a whole number (4.0043 for 1999 -> 499) and most tile corners are not
    reachable: comparing one of those against our exact tile always failed, and the level
    silently lost the fast path. Row 0 and column 0 are always reachable (0 / ds = 0).
    """

    def ok(n: int, step: int) -> np.ndarray:
        at = np.arange(n) * step
        return np.array([round(v * ds) / ds == v for v in at.tolist()], bool)

    down = -(-lvl.height // lvl.tile_h)
    cols, rows = ok(lvl.tiles_across, lvl.tile_w), ok(down, lvl.tile_h)
    return np.flatnonzero((rows[:, None] & cols[None, :]).ravel()[: len(lvl.counts)])


@dataclass
class _CacheGeneration:
    """One shared OpenSlide cache and the handles bound to it."""

    cache: openslide.OpenSlideCache
    served: int = 0  # handles ever bound to it
    live: int = 0  # handles bound and not closed


_cache_lock = threading.Lock()
_current: _CacheGeneration | None = None


def _lease_cache() -> _CacheGeneration:
    """The cache a new handle binds to: the current one, or a fresh one once the current one
    has served OPENSLIDE_CACHE_HANDLES handles (from then on it lives only as long as its
    handles, and the tiles of its closed slides go with it)."""
    global _current
    with _cache_lock:
        if _current is None or _current.served >= OPENSLIDE_CACHE_HANDLES:
            _current = _CacheGeneration(openslide.OpenSlideCache(OPENSLIDE_CACHE_BYTES))
        _current.served += 1
        _current.live += 1
        return _current


def _return_cache(gen: _CacheGeneration) -> None:
    """A handle bound to `gen` closed; with none left open, nothing is kept for it."""
    global _current
    with _cache_lock:
        gen.live -= 1
        if gen.live == 0 and gen is _current:
            _current = None


def shared_openslide_cache() -> openslide.OpenSlideCache:
    """The OpenSlide tile cache that slides opened now share."""
    global _current
    with _cache_lock:
        if _current is None:
            _current = _CacheGeneration(openslide.OpenSlideCache(OPENSLIDE_CACHE_BYTES))
        return _current.cache


class OpenSlideReader(SlideReader):
    def __init__(self, path: Path, vendor: str, *, fast_path: bool = True) -> None:
        self.path = path
        self.vendor = vendor
        self._lock = threading.Lock()
        self._closed = False
        self._generation = 0
        self._retired: list[openslide.OpenSlide] = []  # dead handles; closed with the reader
        self._leases: list[_CacheGeneration] = []  # the caches its handles are bound to
        try:
            self._osr = self._open_handle()
            osr = self._osr
            self.level_dimensions = tuple((int(w), int(h)) for w, h in osr.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in osr.level_downsamples)
            self.properties = dict(osr.properties)
            self._associated = tuple(osr.associated_images.keys())
        except openslide.OpenSlideError as e:
            self._return_leases()
            raise _failure(path, e) from e
        try:
            for i, (w, h) in enumerate(self.level_dimensions):
                check_pixel_budget(path, w, h, f"level {i}")
                tw = self.properties.get(f"openslide.level[{i}].tile-width", "")
                th = self.properties.get(f"openslide.level[{i}].tile-height", "")
                if tw.isdigit() and th.isdigit():
                    check_tile_budget(path, int(tw), int(th), f"level {i}")
        except SlideError:
            self._osr.close()
            self._return_leases()
            raise
        self.mpp = _parse_mpp(self.properties, vendor)
        if vendor in _FAST_VENDORS:
            self.stray_levels = stray_levels(self.level_dimensions)
        self.background = _parse_background(self.properties)
        self._tiff: TiffTiles | None = None
        self._fast: dict[int, TiffLevel] = {}
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
        gen = _lease_cache()
        self._leases.append(gen)
        osr.set_cache(gen.cache)
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
                        raise _failure(self.path, e, "reopening after a read error: ") from e
                    self._generation += 1
                osr = self._osr
            try:
                return fn(osr)
            except openslide.OpenSlideError as e:
                raise _failure(self.path, e, "read failed twice: ") from e

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
            with tifffile_log(), tifffile.TiffFile(self.path) as tif:
                candidates: dict[tuple[int, int], list[tifffile.TiffPage]] = {}
                for page in tif.pages:
                    if isinstance(page, tifffile.TiffPage) and page.is_tiled:
                        candidates.setdefault((page.imagewidth, page.imagelength), []).append(page)
                levels = {}
                for i, dims in enumerate(self.level_dimensions):
                    pages = candidates.get(dims, [])
                    if len(pages) == 1 and (lvl := fast_level(pages[0])) is not None:
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
        self._tiff = TiffTiles(self.path, self.background, TILE_CACHE_BYTES)
        self._fast = levels
        # Prove identity on this file: the busiest tile of each level vs OpenSlide, among the
        # tiles whose corner OpenSlide can address exactly (see _exact_tiles).
        for i, lvl in list(levels.items()):
            ds = self.level_downsamples[i]
            exact = _exact_tiles(lvl, ds)
            idx = int(exact[np.argmax(lvl.counts[exact])])
            row, col = divmod(idx, lvl.tiles_across)
            x0, y0 = col * lvl.tile_w, row * lvl.tile_h
            w, h = min(lvl.tile_w, lvl.width - x0), min(lvl.tile_h, lvl.height - y0)
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

    def _read_tiles(self, lvl: TiffLevel, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._closed or self._tiff is None:
            raise SlideError(f"slide {quoted(self.path)} is closed; open it again")
        return self._tiff.read(lvl, level, x, y, w, h)

    def _return_leases(self) -> None:
        for gen in self._leases:
            _return_cache(gen)
        self._leases.clear()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for osr in [*self._retired, self._osr]:
                osr.close()
            self._retired.clear()
            self._return_leases()
            if self._tiff is not None:
                self._tiff.close()
