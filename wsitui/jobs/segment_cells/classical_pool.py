"""The classical fallback's tiles on worker processes, one tile per core at once.

The classical model (`wsitui/models/classical.py`, the default) is numpy, scipy.ndimage and
skimage calls, and its heaviest ones (binary erosions, labelling, min/max filters) hold the GIL:
measured 2026-12-06, two threads ran them no faster than one. So a classical job used one core
whatever the machine. Here each tile goes to a worker process instead (its pixels in, its labels
out: ~1.4 + 1.8 MB pickled for a 672² tile, a few ms against ~250 ms of segmentation), as many
at once as the job has processes; the labels are the same (the same function on the same
pixels, tested). Worker processes start once per job (forkserver, ~1-2 s while the first tiles
are read) and end with it, or within a second of a `kill -9` of wsitui (`exit_with`).

A tile's labels come back through a file (`core/pool_results.py`), not the pool's pipe: a
cancel terminates the workers, and one ended while it sent its labels back left the job's
threads, and the process at exit, waiting for good.

How many (`workers`, absent): one per core this process may run on, bounded by the job's
`memory_gb` (each worker holds numpy/scipy/skimage and one tile's temporaries) and by the tiles
to do; none (the job's own thread, as before) on one core or under `MIN_TILES` tiles, where
starting workers costs more than it saves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from wsitui.core.pool_results import (
    ResultLost,
    discard,
    from_file,
    pool_processes,
    result_of,
    results_folder,
    to_file,
    wait_gone,
)
from wsitui.core.pool_worker import start_pool
from wsitui.jobs.segment_cells.accel import PipelineShape
from wsitui.jobs.segment_cells.memory import GB, READ_AHEAD_BYTES
from wsitui.models import classical

log = logging.getLogger(__name__)

MIN_TILES = 12  # fewer tiles to segment: the job's own thread (workers take ~1-2 s to start)
# Memory, measured 2026-12-06 on 672² tiles: a classical job's own process ~0.35 GB peak
# (README: 319 MB on a 40,000 x 30,000 slide); a worker 86 MB after its imports, 132 MB at its
# peak (its tile's temporaries: ~100 B per input px).
MAIN_BYTES = 0.4 * GB
WORKER_BYTES = 90 * 2**20
WORKER_BYTES_PER_PX = 100


def worker_bytes(input_size: int) -> int:
    """One worker's memory for tiles of `input_size`² px."""
    return WORKER_BYTES + WORKER_BYTES_PER_PX * input_size * input_size


def processes_for(
    asked: int | None, tiles: int, cpus: int, input_size: int, budget_gb: float
) -> int:
    """Worker processes for a classical job: as many as asked (the job's `workers`), absent
    one per core on jobs of `MIN_TILES` or more; either way no more than the job's memory
    budget holds and than the tiles it has to do. 0: the job's own thread."""
    room = budget_gb * GB - MAIN_BYTES - READ_AHEAD_BYTES
    fits = int(room // worker_bytes(input_size))
    if asked is None:
        if cpus < 2 or tiles < MIN_TILES:
            return 0
        asked = cpus
    n = min(asked, fits, tiles)
    return n if n >= 2 else 0


def classical_pipeline(workers: int) -> PipelineShape:
    """The tile pipeline around `workers` worker processes: one tile more than workers in
    flight (a worker that finishes takes the next at once); tracing (a Python walk holding the
    GIL, ~0.2 of a tile's segmentation time, measured: 58 ms against 250-320 ms) in processes
    too once one thread could not keep up (5 workers or more); readers (tifffile decodes
    without the GIL, ~33 ms a tile) one per three workers."""
    tracers = 0 if workers < 5 else math.ceil(workers / 5)
    return PipelineShape(
        inflight=workers + 1,
        extract_workers=max(1, tracers),
        trace_processes=tracers,
        read_threads=max(2, min(6, workers // 3)),
    )


def _warm() -> None:
    """A worker's first call, before the job's first tile: the model's code paths loaded."""
    classical.segment_tile(np.full((32, 32, 3), 230, np.uint8))


class ClassicalPool:
    """`predict` as the classical model's, each tile segmented on a worker process. A worker
    that dies (killed, out of memory) does not fail the job: its tiles and every later one are
    segmented on the calling threads, one at a time as before the pool (the same labels;
    `failed` says why, for the manifest)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.failed = ""  # why the workers stopped, when they did before the job's end
        self._closed = False
        self._lock = threading.Lock()
        self._own_thread = threading.Lock()  # after a failure: one tile at a time
        # Each worker's first call, a tiny tile, before the job's first tile. The fork server
        # imports the model (and this module) once: each worker forked from it starts with
        # numpy, scipy and skimage loaded (~1-2 s each otherwise).
        self._pool: ProcessPoolExecutor | None = start_pool(
            processes, _warm, preload=(classical.__name__, __name__)
        )
        # Where the workers leave each tile's labels, for a moment (`from_file` removes each).
        self._dir: Path | None = None
        try:
            self._dir = results_folder()
        except OSError as exc:  # a full temporary disk: the job's thread, as after a failure
            self.failed = f"no folder for the workers' results: {exc}"
            log.warning("classical worker processes unused (%s); tiles on threads", self.failed)

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        """Labels (B, H, W) int32 of a uint8 (B, H, W, 3) batch (`postprocess`: the classical
        model has none; accepted as the model's own `predict` accepts it)."""
        pool = self._pool
        if pool is not None and not self.failed:
            futures: list[Future[tuple[str, str]]] = []
            try:
                tiles = [np.ascontiguousarray(t) for t in batch]
                for t in tiles:
                    futures.append(pool.submit(to_file, self._dir, classical.segment_tile, t))
                return np.stack([from_file(result_of(pool, f)) for f in futures]).astype(np.int32)
            except (BrokenProcessPool, ResultLost) as exc:
                # A worker died, or could not write its labels (a full temporary disk): the
                # pool is not used from now on; the tiles run on the job's thread.
                discard(futures)
                if self._closed:
                    raise  # stopped by `close(now=True)`: the job is over
                with self._lock:
                    if not self.failed:
                        self.failed = str(exc) or type(exc).__name__
                        log.warning("classical worker processes failed (%s); tiles on threads", exc)
            except BaseException:
                discard(futures)  # the batch's other tiles: their files go as they end
                raise
        if self._closed:
            raise RuntimeError("the job's classical worker processes were stopped")
        with self._own_thread:  # a worker's death is often memory running short: no more at once
            return np.stack([classical.segment_tile(t) for t in batch]).astype(np.int32)

    def close(self, now: bool = False) -> None:
        """End the workers: after the tiles they run, or (`now`: a cancel, a failure) at once,
        the tiles they run dropped (a cancel is answered in a fraction of a second whatever a
        tile costs). Idempotent."""
        if now:  # first: a tile asked for from here on is refused, not run on the job's thread
            self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None and not now:
            pool.shutdown(wait=True, cancel_futures=True)
        elif pool is not None:
            processes = pool_processes(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            for p in processes:
                with contextlib.suppress(Exception):  # already gone
                    p.terminate()
            # Gone before their folder is (a worker may be writing a tile's labels into it);
            # SIGTERM ends one at once.
            wait_gone(processes, 2.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
