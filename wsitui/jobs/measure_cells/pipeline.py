"""Tiles through a bounded pipeline, in order: loaded on a thread, measured in worker processes.

A tile's inputs are I/O: its cells' lines of cells.geojson and the slide region (OpenSlide and
the JPEG decoder release the GIL). One loader thread reads them, tile after tile. Measuring
holds the GIL (measured: two threads measure no faster than one), so with `workers` > 1 the
loaded polygons (`TileInput`) go to a pool of that many worker processes, started with `spawn`
(the engine has threads; `fork` with threads is unsafe), and each worker reads its tiles'
pixels itself (`measure_in_worker`, the slide opened once per worker). With one worker the
loader reads the pixels too and a tile is measured on the job's own thread, the next loaded
meanwhile: the serial path.

Results are taken in the order tiles were started, so the job writes exactly what the serial
path writes. At most `depth` tiles are in flight (loaded or being measured, not yet taken), so
memory stays flat. Waiting for a tile checks for cancel every POLL_S seconds; on close the tiles
not yet begun are dropped and the pool is shut down without waiting: a tile that a worker is
measuring finishes there and its result is thrown away, while the job has already stopped.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from wsitui.core.executor import JobError
from wsitui.core.pool_results import (
    ResultLost,
    broken_for_good,
    from_file,
    pool_processes,
    remove_when_gone,
    results_folder,
    to_file,
)
from wsitui.core.pool_worker import exit_with, terminal_signals_blocked
from wsitui.jobs.common.staged import Finishing
from wsitui.jobs.measure_cells.measure import (
    LoadedTile,
    Scale,
    TileInput,
    measure_input,
    with_pixels,
)
from wsitui.jobs.measure_cells.stain import Stains
from wsitui.slides.reader import SlideReader, open_slide

POLL_S = 0.1  # how often a wait for a tile checks for cancel
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pending:
    """A tile started: its rows ready (a shard reused) or on their way."""

    features: list[dict[str, Any]] | None = None
    rows: np.ndarray | None = None
    loading: Future[tuple[list[dict[str, Any]], Any]] | None = None


class TilePipeline(Finishing):
    def __init__(
        self,
        load: Callable[[np.ndarray], LoadedTile],
        measure: Callable[[TileInput], np.ndarray],
        workers: int,
        check_cancel: Callable[[], None],
    ) -> None:
        """`measure` runs in the worker processes when workers > 1: a module-level function
        (or a functools.partial of one) so that it pickles."""
        self._load, self._measure, self._check_cancel = load, measure, check_cancel
        self.workers = max(1, workers)
        self.depth = self.workers + 1 if self.workers > 1 else 1  # tiles in flight, taken aside
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="measure-load")
        self._pool = (
            ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with,  # a kill -9 of wsitui leaves no worker behind
                initargs=(os.getpid(),),
            )
            if self.workers > 1
            else None
        )
        # The workers' results come back through files (core/pool_results.py: a worker killed
        # while it sends one back would leave the job waiting for good).
        self._folder = None
        if self._pool is not None:
            try:
                self._folder = results_folder()
            except OSError as exc:  # a full temporary disk: measured in this process
                log.warning("measuring worker processes unused (no folder for results: %s)", exc)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self._started: list[Future[Any]] = []
        self._stopped = False  # a wait was stopped by cancel

    def ready(self, features: list[dict[str, Any]], rows: np.ndarray) -> Pending:
        return Pending(features=features, rows=rows)

    def start(self, own: np.ndarray) -> Pending:
        """Begin loading (and, with workers, measuring) the tile of cells `own`."""
        future = self._loader.submit(self._load_and_send, own)
        self._started.append(future)
        return Pending(loading=future)

    def _load_and_send(self, own: np.ndarray) -> tuple[list[dict[str, Any]], Any]:
        tile = self._load(own)
        if self._pool is None:
            return tile.features, tile.input
        try:
            # A submit starts a worker while fewer run: never killed by a Ctrl-C or hang-up
            # sent to the process group (pool_worker.py); the job's process answers them.
            with terminal_signals_blocked():
                return tile.features, self._pool.submit(
                    to_file, self._folder, self._measure, tile.input
                )
        except (BrokenProcessPool, RuntimeError) as e:  # RuntimeError: shut down by close()
            return tile.features, e

    def take(self, p: Pending) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The tile's Features and measured rows (waits for them; raises JobCanceled if the job
        is asked to stop meanwhile)."""
        if p.loading is None:
            assert p.features is not None and p.rows is not None
            return p.features, p.rows
        self._started.remove(p.loading)
        features, got = self._wait(p.loading)
        if self._pool is None:
            return features, self._measure(got)
        if isinstance(got, BaseException):
            raise _worker_error(got) from got
        try:
            return features, from_file(self._wait(got))
        except BrokenProcessPool as e:
            raise _worker_error(e) from e
        except ResultLost as e:
            raise JobError(str(e)) from e

    def _wait(self, future: Future[T]) -> T:
        while True:
            try:
                self._check_cancel()
            except BaseException:
                self._stopped = True
                raise
            try:
                return future.result(timeout=POLL_S)
            except TimeoutError:
                # A tile submitted while the pool broke can be left pending for good
                # (pool_results.result_of): it is a worker's death too.
                if self._pool is not None and broken_for_good(self._pool, future):
                    raise BrokenProcessPool("a worker process died") from None

    def close(self) -> None:
        """Stop the loader and the workers, after the tile a worker is measuring unless a wait
        was stopped by cancel."""
        self._shut_down(wait=not self._stopped)

    def abort(self) -> None:
        """Stop the loader and the workers (the job was canceled or failed) without waiting for
        a tile a worker is measuring: it finishes there, unread, and the worker exits."""
        self._shut_down(wait=False)

    def _shut_down(self, *, wait: bool) -> None:
        for future in self._started:
            future.cancel()
        self._started.clear()
        self._loader.shutdown(wait=True, cancel_futures=True)  # a load ends within one read
        processes = pool_processes(self._pool)
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._folder is not None and wait:
            shutil.rmtree(self._folder, ignore_errors=True)
        elif self._folder is not None:
            # Once the workers are gone: one still measuring writes its result there.
            remove_when_gone(self._folder, processes)


_readers: dict[str, SlideReader] = {}  # in a worker process: the slide, opened once


def measure_in_worker(tile: TileInput, stains: Stains, sc: Scale, slide: str) -> np.ndarray:
    """measure_input in a worker process, which reads the tile's pixels itself: a few MB a
    tile through a pipe cost the job's process more than the read (measured)."""
    reader = _readers.get(slide)
    if reader is None:
        reader = _readers[slide] = open_slide(slide)
    return measure_input(with_pixels(tile, reader, sc), stains, sc)


def _worker_error(e: BaseException) -> JobError:
    return JobError(
        f"a measuring worker process stopped ({type(e).__name__}: {e}); out of memory? retry, "
        "or set workers = 1"
    )
