"""Loading the next tile on a thread while this one is measured.

A tile's inputs are I/O: its cells' lines of cells.geojson and the slide region (OpenSlide and
the JPEG decoder release the GIL). One worker thread loads tile i + 1 while the job's thread
measures tile i, so the two overlap; at most two tiles are held, so memory stays flat. Only
this thread reads the slide while the tiles are measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import numpy as np

from wsitui.jobs.measure_cells.measure import LoadedTile


class TileLoader:
    def __init__(
        self, load: Callable[[np.ndarray], LoadedTile], tiles: Sequence[tuple[str, np.ndarray]]
    ) -> None:
        self._load, self._tiles = load, tiles
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="measure-load")
        self._ahead: tuple[int, Future[LoadedTile]] | None = None

    def get(self, i: int) -> LoadedTile:
        """Tile i's inputs; tile i + 1's start loading meanwhile (a resumed job that skips it
        loads one tile for nothing)."""
        if self._ahead is not None and self._ahead[0] == i:
            now = self._ahead[1]
        else:
            if self._ahead is not None:
                self._ahead[1].cancel()
            now = self._pool.submit(self._load, self._tiles[i][1])
        nxt = i + 1
        self._ahead = (
            (nxt, self._pool.submit(self._load, self._tiles[nxt][1]))
            if nxt < len(self._tiles)
            else None
        )
        return now.result()

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        self._pool.shutdown(wait=True)  # a load in flight ends within one tile's read

    def __enter__(self) -> TileLoader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
