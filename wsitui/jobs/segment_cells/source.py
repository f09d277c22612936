"""Tile pixels at the model's pixel size, read ahead of the model by a small thread pool.

`read_tile` reads a tile's read region from the planned pyramid level, resamples it to model
pixels when the level is not at the model's scale, and pads it (with the slide's background
colour) to the fixed model input size, so every batch has one shape. `Prefetcher` keeps at most
`window` tiles read ahead of the consumer: memory stays flat whatever the slide size.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.segment_cells.domain import chromogen_share
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.slides.reader import SlideReader


@dataclass(slots=True)
class TileImage:
    tile: Tile
    rgb: np.ndarray  # (input_size, input_size, 3) uint8; valid pixels top-left (h, w)
    h: int
    w: int
    seconds: float  # reading and resampling
    chromogen: float = float("nan")  # share of its tissue stained like DAB (domain.py)


def read_tile(reader: SlideReader, plan: CellPlan, tile: Tile) -> TileImage:
    began = time.perf_counter()
    rx, ry, rw, rh = tile.read  # model px
    level = plan.read_level
    ds = reader.level_downsamples[level]
    factor = plan.scale / ds  # level px per model px (>= 1)
    x0, y0 = round(rx * plan.scale), round(ry * plan.scale)  # level-0 location
    if abs(factor - 1) < 1e-6:
        rgb = reader.read_region((x0, y0), level, (rw, rh))
    else:
        lw, lh = max(1, round(rw * factor)), max(1, round(rh * factor))
        raw = reader.read_region((x0, y0), level, (lw, lh))
        # Area averaging when shrinking (no aliasing); bilinear when a coarse slide is enlarged.
        how = Image.Resampling.BOX if factor > 1 else Image.Resampling.BILINEAR
        img = Image.fromarray(raw).resize((rw, rh), how)
        rgb = np.asarray(img)
    chromogen = chromogen_share(rgb[:rh, :rw])
    size = plan.input_size
    if rgb.shape[:2] != (size, size):
        padded = np.empty((size, size, 3), np.uint8)
        padded[...] = reader.background
        padded[:rh, :rw] = rgb[:rh, :rw]
        rgb = padded
    return TileImage(tile, rgb, rh, rw, time.perf_counter() - began, chromogen)


class Prefetcher:
    """Reads `tiles` in order on `threads` threads, at most `window` ahead of the consumer."""

    def __init__(
        self,
        reader: SlideReader,
        plan: CellPlan,
        tiles: Iterable[Tile],
        *,
        threads: int,
        window: int,
    ) -> None:
        self._reader, self._plan = reader, plan
        self._tiles = iter(tiles)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="wsitui-read")
        self._window = max(1, window)
        self._pending: deque[Future[TileImage]] = deque()

    def __iter__(self) -> Iterator[TileImage]:
        self._fill()
        while self._pending:
            image = self._pending.popleft().result()
            self._fill()
            yield image

    def _fill(self) -> None:
        while len(self._pending) < self._window:
            tile = next(self._tiles, None)
            if tile is None:
                return
            self._pending.append(self._pool.submit(read_tile, self._reader, self._plan, tile))

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
