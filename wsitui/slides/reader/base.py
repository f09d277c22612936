"""The reader interface every backend implements, and what all of them share.

`SlideReader` holds the reads built on a backend's `_read`: bounds checks, whole-level and
reduced reads block by block (at most READ_BLOCK x READ_BLOCK level pixels per read, so a
slide without a coarse level costs the output plus a few blocks of memory), thumbnails. Also
here: RGBA compositing, background canvases, and the pixel budgets checked from headers.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from PIL import Image

from wsitui.slides.errors import SlideError, quoted

# Budgets checked from headers, before anything is allocated or handed to OpenSlide (which
# aborts the whole process when GLib cannot allocate). The biggest real scans are ~200k x 100k.
MAX_SLIDE_PIXELS = 2**35  # any page/level: ~34 Gpx, e.g. 185,000 x 185,000
MAX_TILE_PIXELS = 4096 * 4096  # one stored tile is decoded whole: 48 MB of RGB at this limit
MAX_REGION_PIXELS = 2**26  # one read_region (256 MB as RGBA); larger requests are a caller bug
READ_BLOCK = 2048  # side of the largest region read_level_scaled asks the backend for at once
SCALED_READ_WORKERS = min(4, os.cpu_count() or 1)  # blocks decoded at once (tifffile frees GIL)
WHITE = (255, 255, 255)
SLIDE_HINT = "give an SVS, tiled TIFF, NDPI, MRXS (or other OpenSlide format), PNG or JPEG file"


class SlideReader(ABC):
    """Read-only access to one slide. read_region is safe to call from many threads."""

    path: Path
    vendor: str | None  # OpenSlide vendor ('aperio', 'generic-tiff', ...); None for Pillow
    backend: str  # 'openslide', 'tifffile+openslide', 'tifffile' (TiffPyramidReader) or 'pillow'
    level_dimensions: tuple[tuple[int, int], ...]  # (width, height) per level
    level_downsamples: tuple[float, ...]
    mpp: float | None  # µm per level-0 pixel, if the file says
    properties: Mapping[str, str]
    background: tuple[int, int, int]  # what transparent / out-of-image pixels become
    # (bytes, mtime ns) of the file when open_slide opened it: what a downstream job compares
    # to know its upstream read this same file (None: a reader made without open_slide).
    file_identity: tuple[int, int] | None = None
    # Levels best_level_for_downsample never picks: pages the backend lists as levels that are
    # no reduction of level 0 (a label written tiled; see OpenSlideReader). Still readable.
    stray_levels: frozenset[int] = frozenset()

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
        """The coarsest level whose downsample is <= `downsample` (OpenSlide's rule), never a
        stray level."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + 1e-6) and i not in self.stray_levels:
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


def mean_positive(values: list[Any], scale: Callable[[float], float]) -> float | None:
    """The mean of `scale(float(v))` over `values` where that is a finite positive number (a
    pixel size read from x and y tags or fields: missing, zero, unparsable ones skipped)."""
    vals = []
    for value in values:
        try:
            v = scale(float(value)) if value is not None else math.nan
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(v) and v > 0:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


STRAY_SLACK = 0.05  # how far a level's two axis factors may part beyond their rounding


def stray_levels(dims: tuple[tuple[int, int], ...]) -> frozenset[int]:
    """Levels whose width and height are reduced by different factors: no level of this image.

    OpenSlide takes every tiled page of an SVS (and every tiled reduced page of a generic
    TIFF) for a level; a label or macro written tiled, smaller than the last level, became
    one, and a job's best_level_for_downsample picked it: the tissue mask was the label's 64
    x 64 px (downsamples 31.2 x 23.5, 100 % tissue). A real level's sides are its factor's
    division of level 0's, rounded either way: side s from s0 means a factor in
    (s0 / (s + 1), s0 / (s - 1)). A level's two axes' intervals overlap (up to STRAY_SLACK);
    a 1 px side says only "a factor over s0 / 2", so a 1 x 94 page of a 2000 x 1500 image
    (factors >= 1000 across, ~16 down) is no level.
    """
    w0, h0 = dims[0]
    stray = set()
    for i, (w, h) in enumerate(dims[1:], 1):
        if w < 1 or h < 1:
            stray.add(i)
            continue
        (lo_x, hi_x), (lo_y, hi_y) = _factor_interval(w0, w), _factor_interval(h0, h)
        if max(lo_x, lo_y) > min(hi_x, hi_y) * (1 + STRAY_SLACK):
            stray.add(i)
    return frozenset(stray)


def _factor_interval(full: int, side: int) -> tuple[float, float]:
    """The reduction factors that give `side` px from `full` px, rounded down or up."""
    return full / (side + 1), (full / (side - 1) if side > 1 else math.inf)


def corrupt(path: Path, what: str) -> SlideError:
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
