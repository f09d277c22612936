"""The tile pipeline: reading, inference and polygon extraction overlap.

    reader threads --(bounded prefetch)--> model (this thread, batches) --(bounded)--> extractor

Reads run ahead on a small pool (tifffile decodes without the GIL); the model runs batches on
the calling thread with its own thread budget; each tile's labels go to one extractor thread
that traces polygons and writes the tile's shard. Tiles read ahead are bounded in bytes
(`memory.read_window`) and at most two batches wait for extraction, so memory is bounded
whatever the slide size and batch size. A tile whose shard is valid (a resumed or retried job,
see `common/shards.py`) is not segmented again. Cancel is checked between batches.

`Progress.tiles_done` counts grid tiles settled (skipped + segmented, as the Dask backend does);
the job reports to the faces only the work to do (tissue tiles), with skipped tiles apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends.protocol import TIMING_KEYS, Progress, Segmenter, TileRun
from wsitui.jobs.segment_cells.backends.tile import cells_in, predictor, records
from wsitui.jobs.segment_cells.chatter import to_log
from wsitui.jobs.segment_cells.domain import out_of_domain
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.memory import read_window
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.jobs.segment_cells.source import Prefetcher, TileImage
from wsitui.slides.reader import SlideReader


def shard_key(tile: Tile) -> str:
    return f"t{tile.col}_{tile.row}"


@dataclass(slots=True)
class Timings:
    read: float = 0.0  # summed over reader threads (they overlap the model)
    infer: float = 0.0
    post: float = 0.0  # polygon extraction + shard writes (overlaps the model)
    wait_read: float = 0.0  # time the model waited for pixels: the part reading did not hide
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + seconds)


def run_tiles(
    reader: SlideReader,
    plan: CellPlan,
    model: Segmenter,
    shards: ShardStore,
    *,
    batch_size: int,
    min_area_px: float,
    read_threads: int,
    on_progress: Callable[[Progress], None],
    check_cancel: Callable[[], None],
    on_labels: Callable[[Tile, np.ndarray], None] | None = None,
) -> Timings:
    """Segment every planned tile that has no shard yet; shards hold the results."""
    timings = Timings()
    todo = [t for t in plan.tiles if not shards.has(shard_key(t))]
    done = plan.skipped + len(plan.tiles) - len(todo)
    cells = _count_cells(shards, [t for t in plan.tiles if shards.has(shard_key(t))])
    state = Progress(done, cells)
    lock = threading.Lock()
    on_progress(state)

    def post(image: TileImage, labels: np.ndarray) -> None:
        began = time.perf_counter()
        rec = records(labels, image, plan, min_area_px)
        if on_labels is not None:
            on_labels(image.tile, labels[: image.h, : image.w])
        shards.put_bytes(shard_key(image.tile), rec.to_bytes())
        timings.add("post", time.perf_counter() - began)
        with lock:
            state.tiles_done += 1
            state.cells += cells_in(rec)
            state.odd += int(out_of_domain(image.chromogen))
            snapshot = Progress(state.tiles_done, state.cells, state.odd)
        on_progress(snapshot)

    window = read_window(plan.input_size**2 * 3, batch_size, read_threads)
    prefetch = Prefetcher(reader, plan, todo, threads=read_threads, window=window)
    extractor = ThreadPoolExecutor(1, thread_name_prefix="wsitui-extract")
    infer = ThreadPoolExecutor(1, thread_name_prefix="wsitui-infer")
    pending: list[Future[None]] = []
    try:
        batch: list[TileImage] = []
        images = iter(prefetch)
        while True:
            check_cancel()
            waited = time.perf_counter()
            image = next(images, None)
            timings.add("wait_read", time.perf_counter() - waited)
            if image is not None:
                timings.add("read", image.seconds)
                batch.append(image)
                if len(batch) < batch_size:
                    continue
            if not batch:
                break
            began = time.perf_counter()
            # Out-of-domain tiles (DAB-like stain) get instanseg's post-processing tightened:
            # its time grows with the seeds a model proposes on what it was not made for.
            odd = [out_of_domain(b.chromogen) for b in batch]
            labels = [np.empty(0)] * len(batch)
            for tight in (False, True):
                idx = [i for i, o in enumerate(odd) if o == tight]
                if not idx:
                    continue
                x = np.stack([batch[i].rgb for i in idx])
                fn = predictor(model, tight)
                for i, lab in zip(idx, _interruptible(infer, fn, x, check_cancel), strict=True):
                    labels[i] = lab
            timings.add("infer", time.perf_counter() - began)
            for b, lab in zip(batch, labels, strict=True):
                pending.append(extractor.submit(post, b, lab))
            batch = []
            # Back-pressure: at most two batches wait for extraction.
            while len(pending) > 2 * batch_size:
                pending.pop(0).result()
            if image is None:
                break
        for fut in pending:
            fut.result()
    finally:
        prefetch.close()
        extractor.shutdown(wait=True, cancel_futures=True)
        infer.shutdown(wait=False)  # a batch still computing after a cancel is left to finish
    return timings


def _interruptible(
    pool: ThreadPoolExecutor,
    fn: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    check_cancel: Callable[[], None],
) -> np.ndarray:
    """`fn(batch)` on `pool`, checking for cancel every 0.1 s: a cancel is answered within a
    fraction of a second even when one batch takes several (its result is then discarded)."""
    fut = pool.submit(_quiet, fn, batch)
    while True:
        try:
            return fut.result(timeout=0.1)
        except TimeoutError:
            check_cancel()


def _quiet(fn: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    with to_log():  # instanseg prints from its TorchScript: to the log, not the screen
        return fn(batch)


def _count_cells(shards: ShardStore, tiles: Sequence[Tile]) -> int:
    total = 0
    for tile in tiles:
        rec = load_records(shards, tile)
        if rec is not None:
            total += cells_in(rec)
    return total


def load_records(shards: ShardStore, tile: Tile) -> CellRecords | None:
    """The tile's records from its shard, or None when it has none or an unusable one (then
    the shard is dropped: its tile is redone, never a decoder's traceback)."""
    key = shard_key(tile)
    data = shards.get_bytes(key)
    if data is None:
        return None
    try:
        return CellRecords.from_bytes(data)
    except Exception:  # numpy / zipfile internals of any kind: the shard is not usable
        shards.discard(key)
        return None


READ_THREADS = 2  # reader threads ahead of the model (tifffile decodes without the GIL)


class LocalBackend:
    """The tiles on this machine: the model loaded here (`ModelCache`), precision and batch
    settled by `accel.accelerate`, the tile pipeline above."""

    name = "local"

    def __init__(
        self,
        models: Any,  # wsitui.models.ModelCache
        gpu_turns: Any,  # accel.GpuTurns
        gpu_count: Callable[[], int],
        source: Any,  # wsitui.models.source.ModelSource
        params: Any,  # SegmentCellsParams
    ) -> None:
        self.models, self.gpu_turns, self.gpu_count = models, gpu_turns, gpu_count
        self.source, self.params = source, params
        self.model: Any = None

    def describe(self, check_cancel: Callable[[], None]) -> Any:
        from wsitui.jobs.segment_cells.accel import torch_cuda_usable

        device = self.gpu_turns.assign(self.params.device, self.gpu_count(), torch_cuda_usable)
        with to_log():  # what instanseg prints while loading goes to the log
            self.model = self.models.get(self.source, device)
        return self.model

    def run_tiles(
        self,
        reader: SlideReader,
        plan: CellPlan,
        shards: ShardStore,
        *,
        min_area_px: float,
        on_progress: Callable[[Progress], None],
        check_cancel: Callable[[], None],
        on_labels: Callable[[Tile, np.ndarray], None] | None,
    ) -> TileRun:
        from wsitui.jobs.segment_cells.accel import accelerate, first_tiles, window_for

        params = self.params
        if self.model is None:
            self.describe(check_cancel)
        model = accelerate(  # precision, GPU batch size, out-of-memory retries
            self.model,
            precision=params.precision,
            batch_size=params.batch_size,
            default_batch=default_batch(params.batch_size, self.model.device),
            probe=lambda: first_tiles(reader, plan),
            window_size=window_for(self.model, params.max_nucleus_um, plan.model_px),
        )
        timings = run_tiles(
            reader,
            plan,
            model,
            shards,
            batch_size=model.batch_size,
            min_area_px=min_area_px,
            read_threads=READ_THREADS,
            on_progress=on_progress,
            check_cancel=check_cancel,
            on_labels=on_labels,
        )
        return TileRun(
            timings={k: round(getattr(timings, k), 4) for k in TIMING_KEYS},
            model=dict(model.manifest()),
            batch_size=model.batch_size,
            read_ahead=read_window(plan.input_size**2 * 3, model.batch_size, READ_THREADS),
        )


def default_batch(batch_size: int | str, device: str) -> int:
    """Tiles per model call: as asked, else 1 on CPU (one tile at a time is as fast per tile,
    measured) and 4 on an accelerator."""
    if batch_size != "auto":
        return int(batch_size)
    return 1 if device == "cpu" else 4
