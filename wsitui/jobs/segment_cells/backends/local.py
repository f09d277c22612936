"""The tile pipeline: reading, inference and polygon extraction overlap.

    reader threads --(bounded prefetch)--> model (`inflight` threads) --(bounded)--> extractor

Reads run ahead on a small pool (tifffile decodes without the GIL); the model runs batches on
`inflight` infer threads (on CPU: the job's torch threads split one per tile in flight, see
`LocalBackend`); each tile's labels go, in order, to one extractor thread
that traces polygons and writes the tile's shard. Tiles read ahead are bounded in bytes
(`memory.read_window`) and at most two batches wait for extraction, so memory is bounded
whatever the slide size and batch size. A tile whose shard is valid (a resumed or retried job,
see `common/shards.py`) is not segmented again. Cancel is checked between batches.

`Progress.tiles_done` counts grid tiles settled (skipped + segmented, as the Dask backend does);
the job reports to the faces only the work to do (tissue tiles), with skipped tiles apart.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsitui.core.pool_results import ResultLost, from_file, result_of, results_folder, to_file
from wsitui.core.pool_worker import start_pool
from wsitui.jobs.common.cpus import available_cpus
from wsitui.jobs.common.grid import Tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends.protocol import TIMING_KEYS, Progress, Segmenter, TileRun
from wsitui.jobs.segment_cells.backends.tile import (
    TraceGeometry,
    cells_in,
    predictor,
    ready,
    traced,
)
from wsitui.jobs.segment_cells.chatter import to_log
from wsitui.jobs.segment_cells.domain import TIGHT, out_of_domain
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.malloc import release_free_memory, tune_malloc
from wsitui.jobs.segment_cells.memory import read_window
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.jobs.segment_cells.source import Prefetcher, TileImage
from wsitui.models import nuclear_gate
from wsitui.slides.reader import SlideReader

log = logging.getLogger(__name__)


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
    inflight: int = 1,
    infer_thread_init: Callable[[], None] | None = None,
    queued: int = 0,
    extract_workers: int = 1,
    trace_processes: int = 0,
) -> Timings:
    """Segment every planned tile that has no shard yet; shards hold the results.

    `inflight` batches run on the model at once (one infer thread each); `queued` more wait,
    already collected, for the next free infer thread (a GPU then never waits for the loop to
    gather its next batch); `extract_workers` threads trace and write finished tiles, the
    tracing itself (a Python walk that holds the GIL) in `trace_processes` worker processes
    when > 0."""
    timings = Timings()
    todo = [t for t in plan.tiles if not shards.has(shard_key(t))]
    done = plan.skipped + len(plan.tiles) - len(todo)
    cells = _count_cells(shards, [t for t in plan.tiles if shards.has(shard_key(t))])
    state = Progress(done, cells)
    lock = threading.Lock()
    on_progress(state)

    geometry = TraceGeometry(plan.scale, plan.geometry.level_dimensions, plan.band, min_area_px)
    procs = _trace_pool(trace_processes)
    # Their results come back through files (core/pool_results.py: a worker killed while it
    # sends one back would leave the job waiting for good).
    folder = None
    if procs is not None:
        try:
            folder = results_folder()
        except OSError as exc:  # a full temporary disk: tracing on the job's threads
            log.warning("tracing processes unused (no folder for their results: %s)", exc)
            procs.shutdown(wait=False, cancel_futures=True)
            procs = None
    broken: list[bool] = []

    def trace(image: TileImage, labels: np.ndarray) -> CellRecords:
        valid = (image.h, image.w)
        if procs is not None and not broken:
            lab = np.ascontiguousarray(labels[: image.h, : image.w])  # only real pixels travel
            try:
                fut = procs.submit(
                    to_file, folder, traced, lab, image.tile, valid, image.chromogen, geometry
                )
                return from_file(result_of(procs, fut))
            except (BrokenProcessPool, ResultLost):
                # A worker died (e.g. a host script without `if __name__ == "__main__":`, which
                # worker processes re-import) or could not write its result (a full temporary
                # disk): the rest of the job traces on its threads.
                if not broken:
                    broken.append(True)
                    log.warning("tracing processes failed; tracing on threads instead")
        return traced(labels, image.tile, valid, image.chromogen, geometry)

    checked: dict[int, tuple[int, int]] = {}  # id(image) -> nuclear check (detections, dropped)
    # On a GPU the model layer's nuclear check and classical fill (CPU work) run here, on the
    # tracing threads, not in the model call on an infer thread (`Accelerated.finisher`).
    apart = getattr(model, "finisher", None) is not None

    def post(image: TileImage, labels: np.ndarray) -> None:
        began = time.perf_counter()
        counts = None
        if apart:
            settings = TIGHT if out_of_domain(image.chromogen) else None  # as `predict` had
            labels, counts = model.finish(image.rgb, labels, settings)
        rec = trace(image, labels)
        with lock:
            counts = checked.pop(id(image), counts)
        if counts is not None:  # the model's nuclear check counts go in the shard (info[2:4])
            rec.info = np.concatenate([rec.info[:2], np.asarray(counts, float)])
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

    def predict(batch: list[TileImage]) -> list[np.ndarray]:  # on an infer thread
        began = time.perf_counter()
        # Out-of-domain tiles (DAB-like stain) get instanseg's post-processing tightened:
        # its time grows with the seeds a model proposes on what it was not made for.
        odd = [out_of_domain(b.chromogen) for b in batch]
        labels = [np.empty(0)] * len(batch)
        with to_log():  # instanseg prints from its TorchScript: to the log, not the screen
            for tight in (False, True):
                idx = [i for i, o in enumerate(odd) if o == tight]
                if not idx:
                    continue
                x = np.stack([batch[i].rgb for i in idx])
                with nuclear_gate.tally() as counts:
                    if apart:  # checked and filled by `post`
                        out = model.predict_network(x, TIGHT if tight else None)
                    else:
                        out = predictor(model, tight)(x)
                for i, lab in zip(idx, out, strict=True):
                    labels[i] = lab
                if len(counts) == len(idx):  # one (detections, dropped) per tile, in order
                    with lock:
                        for i, c in zip(idx, counts, strict=True):
                            checked[id(batch[i])] = c
        timings.add("infer", time.perf_counter() - began)
        return labels

    # Made inside the try: one that fails to start leaves none of the others (nor the tracing
    # processes and their folder, made above) behind.
    prefetch: Prefetcher | None = None
    extractor: ThreadPoolExecutor | None = None
    infer: ThreadPoolExecutor | None = None
    pending: list[Future[None]] = []
    running: deque[tuple[list[TileImage], Future[list[np.ndarray]]]] = deque()

    def settle_oldest() -> None:
        batch, fut = running.popleft()
        labels = _interruptible(fut, check_cancel)
        for b, lab in zip(batch, labels, strict=True):
            pending.append(extractor.submit(post, b, lab))
        # Back-pressure: at most two batches (or one tile per worker) wait for extraction.
        while len(pending) > max(2 * batch_size, extract_workers):
            pending.pop(0).result()

    try:
        window = read_window(plan.input_size**2 * 3, batch_size * (inflight + queued), read_threads)
        prefetch = Prefetcher(reader, plan, todo, threads=read_threads, window=window)
        extractor = ThreadPoolExecutor(extract_workers, thread_name_prefix="wsitui-extract")
        infer = ThreadPoolExecutor(
            inflight, thread_name_prefix="wsitui-infer", initializer=infer_thread_init
        )
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
            if batch:
                running.append((batch, infer.submit(predict, batch)))
                batch = []
            # `inflight` batches on the model at once (one thread each on CPU, see LocalBackend)
            # and `queued` more waiting for it: the oldest is settled only past that.
            while running and (len(running) >= inflight + queued or image is None):
                settle_oldest()
            if image is None:
                break
        for fut in pending:
            fut.result()
    finally:
        if prefetch is not None:
            prefetch.close()
        if extractor is not None:
            extractor.shutdown(wait=True, cancel_futures=True)
        if procs is not None:
            procs.shutdown(wait=True, cancel_futures=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if infer is not None:  # a batch still computing after a cancel is left to finish
            infer.shutdown(wait=False)
    return timings


def _trace_pool(processes: int) -> ProcessPoolExecutor | None:
    """Worker processes for tracing, started now (they import numpy while the first batch is
    read and inferred): `pool_worker.start_pool`."""
    if processes <= 0:
        return None
    return start_pool(processes, ready)


def _interruptible(fut: Future[list[np.ndarray]], check_cancel: Callable[[], None]) -> Any:
    """`fut`'s result, checking for cancel every 0.1 s: a cancel is answered within a fraction
    of a second even when one batch takes several (its result is then discarded)."""
    while True:
        try:
            return fut.result(timeout=0.1)
        except TimeoutError:
            check_cancel()


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
        if not self.model.is_classical and self.model.device == "cpu":
            tune_malloc()  # large tensors from the heap, not fresh mmaps (malloc.py)
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
        from wsitui.jobs.segment_cells.accel import (
            OomRetry,
            PipelineShape,
            accelerate,
            first_tiles,
            gpu_pipeline,
            window_for,
        )
        from wsitui.jobs.segment_cells.classical_pool import (
            ClassicalPool,
            classical_pipeline,
            processes_for,
        )

        params = self.params
        if self.model is None:
            self.describe(check_cancel)
        on_gpu = not self.model.is_classical and str(self.model.device).startswith("cuda")
        workers = 0  # the classical model's worker processes (`classical_pool.py`)
        if self.model.is_classical:
            todo = sum(not shards.has(shard_key(t)) for t in plan.tiles)
            workers = processes_for(
                params.workers, todo, available_cpus(), plan.input_size, params.memory_gb
            )
        if on_gpu:
            shape = gpu_pipeline(available_cpus())
        elif workers:
            shape = classical_pipeline(workers)
        else:
            shape = PipelineShape(read_threads=READ_THREADS)
        window = window_for(self.model, params.max_nucleus_um, plan.model_px)
        model = accelerate(  # precision, GPU batch size, out-of-memory retries
            self.model,
            precision=params.precision,
            batch_size=params.batch_size,
            default_batch=default_batch(params.batch_size, self.model.device),
            probe=lambda: first_tiles(reader, plan),
            window_size=window,
            tiles=len(plan.tiles),
            batches_in_flight=shape.inflight,
            nuclear_check=getattr(params, "nuclear_check", "auto"),
            mask_threshold=getattr(params, "mask_threshold", None),
            classical_fill=getattr(params, "classical_fill", "auto"),
        )
        inflight, init = self._tiles_in_flight(model, window)
        pool = ClassicalPool(workers) if workers else None
        if pool is not None:
            model.runner = OomRetry(pool.predict, model.batch_size)
        if on_gpu or pool is not None:
            inflight = shape.inflight
        cpu_torch = not self.model.is_classical and self.model.device == "cpu"
        try:
            timings = run_tiles(
                reader,
                plan,
                model,
                shards,
                batch_size=model.batch_size,
                min_area_px=min_area_px,
                read_threads=shape.read_threads,
                on_progress=on_progress,
                check_cancel=check_cancel,
                on_labels=on_labels,
                inflight=inflight,
                infer_thread_init=init,
                queued=shape.queued,
                extract_workers=shape.extract_workers,
                trace_processes=shape.trace_processes,
            )
        except BaseException:
            if pool is not None:
                pool.close(now=True)  # a cancel or a failure: the tiles on workers are dropped
            raise
        finally:
            if pool is not None:
                pool.close()
            if cpu_torch:
                # The job's threads are gone; the free heap their arenas keep (up to
                # malloc.TRIM_THRESHOLD each) would otherwise pile up over a cohort's jobs
                # (glibc hands each new thread an arena in turn). Measured, 1,024 x 768 slides
                # one after another: RSS 890 -> 1,887 MB over 8 jobs without, flat at 730-880
                # with, for ~0.1 CPU s of page faults a job (the next job's heap faulted in).
                release_free_memory()
        info = dict(model.manifest())
        info.update(tiles_in_flight=inflight, malloc_tuned=cpu_torch and tune_malloc())
        if self.model.is_classical:
            info["workers"] = workers or 1  # processes that segmented the tiles (1: own thread)
            if pool is not None and pool.failed:
                info["workers_failed"] = pool.failed  # the rest of the tiles on the own thread
        if on_gpu or pool is not None:
            info.update(
                batches_queued=shape.queued,
                extract_workers=shape.extract_workers,
                trace_processes=shape.trace_processes,
                read_threads=shape.read_threads,
            )
        return TileRun(
            timings={k: round(getattr(timings, k), 4) for k in TIMING_KEYS},
            model=info,
            batch_size=model.batch_size,
            read_ahead=read_window(
                plan.input_size**2 * 3,
                model.batch_size * (inflight + shape.queued),
                shape.read_threads,
            ),
        )

    def _tiles_in_flight(
        self, model: Any, window: int | None
    ) -> tuple[int, Callable[[], None] | None]:
        """On CPU, tiles on the model at once with one torch thread each, instead of one tile
        on all the job's threads: instanseg's post-processing is many small operators that two
        threads share badly (measured: ~10 % less CPU per tile, the same labels; README).
        Bounded by the job's memory budget (each tile in flight holds its activations)."""
        from wsitui.jobs.segment_cells.accel import DeviceSegmenter, OomRetry, job_postprocess
        from wsitui.jobs.segment_cells.memory import GB, largest_batch

        params, loaded = self.params, self.model
        threads = int(getattr(loaded, "threads", 1) or 1)
        if (
            loaded.is_classical
            or loaded.device != "cpu"
            or (model.precision.precision != "fp32" and not model.lock_free)
            or model.batch_size != 1
            or threads < 2
        ):
            return 1, None
        fits = largest_batch(params.tile_size, params.max_nucleus_um, False, params.memory_gb * GB)
        inflight = max(1, min(threads, fits))
        if inflight == 1:
            return 1, None
        if not model.lock_free:
            # The loaded model's own predict holds a lock (one call at a time); the same module
            # and post-processing kwargs are called without it here.
            extra = job_postprocess(
                window,
                getattr(params, "nuclear_check", "auto"),
                getattr(params, "mask_threshold", None),
                getattr(params, "classical_fill", "auto"),
            )
            seg = DeviceSegmenter(loaded, "fp32", extra)
            model.runner = OomRetry(seg.predict, 1)
        per_tile = max(1, threads // inflight)

        def one_thread_each() -> None:
            import torch

            torch.set_num_threads(per_tile)  # this thread's OpenMP threads (per thread)

        return inflight, one_thread_each


def default_batch(batch_size: int | str, device: str) -> int:
    """Tiles per model call: as asked, else 1 on CPU (one tile at a time is as fast per tile,
    measured) and 4 on an accelerator."""
    if batch_size != "auto":
        return int(batch_size)
    return 1 if device == "cpu" else 4
