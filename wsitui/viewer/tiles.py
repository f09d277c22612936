"""Slide pixels for the viewer: fixed tiles per pyramid level, read on demand, LRU-cached.

A tile is TILE x TILE level pixels at (tx*TILE, ty*TILE) of its level (clipped at the level's
edge), read through the jobs' slide reader (`SlideReader.read_region`). Decoded tiles go into
one LRU cache bounded in bytes (DEFAULT_CACHE_MB unless told). A thumbnail (BASE_MAX px a side,
`SlideReader.thumbnail`, read at open, ~2 MB) is kept outside the budget: views coarser than it
are drawn from it, and whatever is not cached yet is drawn from it scaled up, so a view is
never blank.

`read_region` is only called from `fetch` (a worker thread in the TUI); the compositor asks
`cached` only, which never reads.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from wsitui.slides.reader import SlideReader
from wsitui.viewer.view import View

TILE = 512  # level px per tile side
DEFAULT_CACHE_MB = 256  # decoded tiles kept (a 512^2 RGB tile is 0.75 MB: ~340 tiles)
RING = 1  # tiles read around the view, so a pan's new strip is usually there already
FETCH_THREADS = 4  # tifffile decoding releases the GIL
READ_LOG_MAX = 10_000  # reads remembered (tests and the benchmark look at them)
BASE_MAX = 1024  # the always-kept thumbnail's longer side
VIRTUAL_FACTOR = 4  # a virtual level (see TileSource) is this much coarser than the one below

Key = tuple[int, int, int]  # (level, tx, ty)


class TileStopped(Exception):
    """A virtual tile's build was stopped part-way (`stop()` turned true between its reads)."""


class TileCache:
    """LRU of decoded tiles, bounded by their bytes. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> np.ndarray | None:
        with self._lock:
            tile = self._d.get(key)
            if tile is not None:
                self._d.move_to_end(key)
            return tile

    def put(self, key: Key, tile: np.ndarray) -> None:
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._d[key] = tile
            self.bytes += tile.nbytes
            while self.bytes > self.max_bytes and len(self._d) > 1:
                _, dropped = self._d.popitem(last=False)
                self.bytes -= dropped.nbytes

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return key in self._d

    def __len__(self) -> int:
        return len(self._d)


class TileSource:
    """One open slide's tiles for the viewer."""

    def __init__(self, reader: SlideReader, cache_mb: float = DEFAULT_CACHE_MB) -> None:
        self.reader = reader
        self.cache = TileCache(int(cache_mb * 2**20))
        self.reads = 0  # tiles read from the slide (tests and the benchmark count them)
        self.read_log: list[tuple[int, int, int, int, int]] = []  # (level, x0, y0, w, h) level-0
        self._pool = ThreadPoolExecutor(FETCH_THREADS, "wsitui-viewer")
        self.base = reader.thumbnail(BASE_MAX)  # (h, w, 3): always at hand
        w0, h0 = reader.dimensions
        # level-0 px per thumbnail px, per axis (the thumbnail's sides are rounded)
        self.base_ds = (w0 / self.base.shape[1], h0 / self.base.shape[0])
        # Virtual levels where the slide's coarsest is far finer than the thumbnail (a
        # single-level TIFF): each VIRTUAL_FACTOR x coarser than the one below, its tiles built
        # from that level's. Without them a view between the two drew every level-0 px it
        # covers into one canvas (a 30,000 px single-level TIFF's whole view took 9 GB and
        # 80 s), from more tiles than the cache holds.
        # The slide's levels but stray ones (a label OpenSlide lists as a level: its sides are
        # reduced by different factors, `SlideReader.stray_levels`): drawn as the slide, a view
        # at its scale showed the label. `_slide_level[i]` is the reader's index of level i.
        stray = reader.stray_levels
        self._slide_level = [i for i in range(reader.level_count) if i not in stray]
        self.real_levels = len(self._slide_level)
        ds = [reader.level_downsamples[i] for i in self._slide_level]
        dims = [reader.level_dimensions[i] for i in self._slide_level]
        while ds[-1] * VIRTUAL_FACTOR < min(self.base_ds):
            ds.append(ds[-1] * VIRTUAL_FACTOR)
            lw, lh = dims[-1]
            dims.append((-(-lw // VIRTUAL_FACTOR), -(-lh // VIRTUAL_FACTOR)))
        self._downsamples = tuple(ds)
        self._dims = dims

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.reader.dimensions

    @property
    def downsamples(self) -> tuple[float, ...]:
        """The slide's levels, then its virtual ones (see __init__)."""
        return self._downsamples

    def level_dims(self, level: int) -> tuple[int, int]:
        return self._dims[level]

    def level_label(self, level: int) -> str:
        """How the status line names a level: 'level 1 (÷4)', and for a virtual one what it
        is computed from: 'level 1 (÷4, computed from level 0)' (the slide has no level 1)."""
        named = (  # a virtual level is numbered after the slide's own, stray ones counted
            self._slide_level[level]
            if level < self.real_levels
            else self.reader.level_count + level - self.real_levels
        )
        text = f"level {named} (÷{self._downsamples[level]:g}"
        if level >= self.real_levels:
            text += f", computed from level {self._slide_level[-1]}"
        return text + ")"

    def tiles_for(self, view: View, level: int, ring: int = 0) -> list[Key]:
        """Tiles of `level` under the view (plus `ring` tiles around), within the level,
        nearest the view's centre first."""
        vis = view.visible
        if vis is None:
            return []
        ds = self.downsamples[level]
        lw, lh = self.level_dims(level)
        tx0 = max(0, math.floor(vis[0] / ds / TILE) - ring)
        ty0 = max(0, math.floor(vis[1] / ds / TILE) - ring)
        tx1 = min(-(-lw // TILE), math.ceil(vis[2] / ds / TILE) + ring)
        ty1 = min(-(-lh // TILE), math.ceil(vis[3] / ds / TILE) + ring)
        cx, cy = view.centre
        keys = [(level, tx, ty) for ty in range(ty0, ty1) for tx in range(tx0, tx1)]
        keys.sort(
            key=lambda k: (
                ((k[1] + 0.5) * TILE * ds - cx) ** 2 + ((k[2] + 0.5) * TILE * ds - cy) ** 2
            )
        )
        return keys

    def tile_box(self, key: Key) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a tile in its level's px, clipped to the level."""
        level, tx, ty = key
        lw, lh = self.level_dims(level)
        return tx * TILE, ty * TILE, min(lw, (tx + 1) * TILE), min(lh, (ty + 1) * TILE)

    def cached(self, key: Key) -> np.ndarray | None:
        return self.cache.get(key)

    def missing(self, keys: Iterable[Key]) -> list[Key]:
        return [k for k in keys if k not in self.cache]

    def read_tile(self, key: Key, stop: Callable[[], bool] = lambda: False) -> np.ndarray:
        """A tile, read (a virtual one built: TileStopped when `stop()` turns true between
        the reads it takes) and cached."""
        level = key[0]
        if level >= self.real_levels:
            return self._build_tile(key, stop)
        x0, y0, x1, y1 = self.tile_box(key)
        ds = self.downsamples[level]
        loc = (round(x0 * ds), round(y0 * ds))
        tile = self.reader.read_region(loc, self._slide_level[level], (x1 - x0, y1 - y0))
        self.reads += 1
        self.read_log.append(
            (self._slide_level[level], loc[0], loc[1], round((x1 - x0) * ds), round((y1 - y0) * ds))
        )
        if len(self.read_log) > READ_LOG_MAX:  # a long session must not grow it for ever
            del self.read_log[: READ_LOG_MAX // 2]
        self.cache.put(key, tile)
        return tile

    def _build_tile(self, key: Key, stop: Callable[[], bool]) -> np.ndarray:
        """A virtual level's tile: the VIRTUAL_FACTOR^2 tiles under it, one level finer (from
        the cache, else read or built in turn), area-averaged (partial edge cells over the
        pixels they have). `stop()` is asked before each read: a coarse tile two virtual
        levels up reads 256 tiles, and a key pressed meanwhile must not wait for them all
        (what was read stays cached for the next build)."""
        level, tx, ty = key
        f = VIRTUAL_FACTOR
        x0, y0, x1, y1 = self.tile_box(key)
        lw, lh = self.level_dims(level - 1)
        cw, ch = min(lw, x1 * f) - x0 * f, min(lh, y1 * f) - y0 * f
        canvas = np.empty((ch, cw, 3), np.uint8)
        for cy in range(ty * f, min(-(-lh // TILE), (ty + 1) * f)):
            for cx in range(tx * f, min(-(-lw // TILE), (tx + 1) * f)):
                child = (level - 1, cx, cy)
                tile = self.cache.get(child)
                if tile is None:
                    if stop():
                        raise TileStopped(f"stopped building tile {key}")
                    tile = self.read_tile(child, stop)
                bx0, by0, bx1, by1 = self.tile_box(child)
                canvas[by0 - y0 * f : by1 - y0 * f, bx0 - x0 * f : bx1 - x0 * f] = tile
        out = np.asarray(Image.fromarray(canvas).reduce(f))
        self.cache.put(key, out)
        return out

    def fetch(self, keys: Iterable[Key], stop: Callable[[], bool] = lambda: False) -> int:
        """Read the tiles not cached yet (several at once); `stop()` true skips the rest.
        Returns how many were read."""
        todo = self.missing(keys)

        def one(key: Key) -> int:
            if stop() or key in self.cache:
                return 0
            try:
                self.read_tile(key, stop)
            except TileStopped:
                return 0
            return 1

        return sum(self._pool.map(one, todo))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.reader.close()
