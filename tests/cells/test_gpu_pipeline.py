"""The CPU side of a GPU job keeps the GPU busy (#19: one H200 sat idle ~75 % of a job whose
one tracing thread and one-batch-at-a-time loop set the pace). No GPU exists here: the model is
a fake "device" (`device = "cuda:0"`) whose calls and the pipeline's tracing are observed by
events, never by timing: two batches are on the device at once, the device keeps getting
batches while an earlier tile's tracing is stuck, and tiles are traced on several threads
(the outline walk itself in worker processes). The cells of such a run are the same as one
tile at a time on one thread in this process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.accel import (
    Accelerated,
    GpuTurns,
    OomRetry,
    PrecisionChoice,
    gpu_pipeline,
    measured_batch_size,
)
from wsitui.jobs.segment_cells.backends import local
from wsitui.jobs.segment_cells.backends.local import LocalBackend, load_records, run_tiles
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.jobs.segment_cells.plan import CellPlan, plan_tiles
from wsitui.slides.reader import open_slide

WAIT = 60.0  # a deadlock guard only: every wait below ends on an event long before this
GiB = 1 << 30


class FakeDevice:
    """A model on a "GPU": one square nucleus per 64 px of each tile, where the tile's pixels
    decide which squares are there (so each tile's cells differ). `hold_first_two`: the first
    two calls meet at a barrier: they pass only when both are on the device at once."""

    pixel_size, device, is_classical = 0.5, "cuda:0", False

    def __init__(self, hold_first_two: bool = False) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.started: dict[int, threading.Event] = {}
        self.both = threading.Barrier(2, timeout=WAIT) if hold_first_two else None

    def call_started(self, n: int) -> threading.Event:
        with self.lock:
            return self.started.setdefault(n, threading.Event())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            n = self.calls
        self.call_started(n).set()
        if self.both is not None and n <= 2:
            self.both.wait()  # BrokenBarrierError (the job fails) unless both are in flight
        labels = np.zeros(batch.shape[:3], np.int32)
        for b, tile in enumerate(batch):
            k = 1
            for y in range(8, tile.shape[0] - 24, 64):
                for x in range(8, tile.shape[1] - 24, 64):
                    if tile[y : y + 16, x : x + 16].mean() < 235:  # tissue under it
                        labels[b, y : y + 14, x : x + 14] = k
                        k += 1
        return labels

    def manifest(self) -> dict[str, object]:
        return {"device": self.device}


def _plan(reader: Any) -> CellPlan:
    return plan_tiles(
        reader,
        slide_mpp=reader.mpp or 0.5,
        model_px=0.5,
        tile_size=256,
        max_nucleus_um=20,
        tissue=None,
    )


def _cells(shards: ShardStore, plan: CellPlan) -> dict[str, np.ndarray]:
    out = {}
    for tile in plan.tiles:
        rec = load_records(shards, tile)
        assert rec is not None
        out[f"{tile.col},{tile.row}"] = np.concatenate([rec.xy.ravel(), rec.status])
    return out


def test_the_gpu_path_keeps_the_device_busy_while_tiles_are_traced(
    tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDevice(hold_first_two=True)
    batch = 1
    monkeypatch.setattr(local, "available_cpus", lambda: 16)  # a GPU machine's cores
    monkeypatch.setattr(  # no CUDA here: precision and batch size settled as given
        "wsitui.jobs.segment_cells.accel.accelerate",
        lambda model, **kw: Accelerated(
            model, OomRetry(model.predict, batch), PrecisionChoice("fp32", "test"), batch
        ),
    )
    params = SegmentCellsParams(model="shipped", device="cuda", batch_size=batch)
    backend = LocalBackend(None, GpuTurns(), lambda: 1, None, params)
    backend.model = fake

    traced_together = threading.Barrier(2, timeout=WAIT)
    seen: list[tuple[int, int]] = []
    order = threading.Lock()
    stuck_until_fourth_call: list[bool] = []

    def on_labels(tile: Any, labels: np.ndarray) -> None:  # on a tracing thread
        with order:
            seen.append((tile.col, tile.row))
            k = len(seen)
        if k == 1:  # the first tile's tracing is stuck until the device took 3 more batches
            stuck_until_fourth_call.append(fake.call_started(4).wait(WAIT))
        elif k in (2, 3):  # two later tiles are traced at the same time
            traced_together.wait()

    with open_slide(sample_slide) as reader:
        plan = _plan(reader)
        assert len(plan.tiles) >= 6
        shards = ShardStore(tmp_path / "gpu", {"p": 1})
        run = backend.run_tiles(
            reader,
            plan,
            shards,
            min_area_px=1,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
            on_labels=on_labels,
        )
        gpu_cells = _cells(shards, plan)

        plain = ShardStore(tmp_path / "plain", {"p": 1})
        run_tiles(  # one batch at a time, one tracing thread: the reference
            reader,
            plan,
            Accelerated(
                FakeDevice(), OomRetry(FakeDevice().predict, 1), PrecisionChoice("fp32", "t"), 1
            ),
            plain,
            batch_size=1,
            min_area_px=1,
            read_threads=2,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
        )
        plain_cells = _cells(plain, plan)

    assert stuck_until_fourth_call == [True]  # the device did not wait on tracing
    assert not traced_together.broken  # tiles were traced on two threads at once
    assert fake.calls == len(plan.tiles)
    assert run.model["tiles_in_flight"] == 2 and run.model["batches_queued"] == 1
    assert run.model["extract_workers"] >= 2 and run.model["trace_processes"] >= 2
    assert sum(len(v) for v in plain_cells.values()) > 0
    assert gpu_cells.keys() == plain_cells.keys()
    for key, cells in plain_cells.items():
        assert np.array_equal(gpu_cells[key], cells), key


def test_gpu_pipeline_uses_the_cores_and_keeps_two_batches_on_the_device() -> None:
    big = gpu_pipeline(16)
    assert big.inflight == 2 and big.queued == 1
    assert big.extract_workers >= 4 and big.read_threads >= 4
    assert big.extract_workers + big.read_threads + big.inflight <= 16
    small = gpu_pipeline(2)  # a small machine still overlaps tracing with the device
    assert small.extract_workers >= 2 and small.read_threads >= 2


def test_auto_batch_fits_every_batch_in_flight_in_free_memory() -> None:
    class Mem:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            self.peak = GiB + len(batch) * GiB // 2
            return np.zeros(batch.shape[:3], np.int32)

        def free(self) -> int:
            return 20 * GiB

        def peak_during(self, fn: Any) -> int:
            fn()
            return self.peak

    m = Mem()
    probe = np.zeros((2, 8, 8, 3), np.uint8)
    one, _ = measured_batch_size(m, probe, m, batches_in_flight=1)
    two, _ = measured_batch_size(m, probe, m, batches_in_flight=2)
    assert 2 * (GiB + two * GiB // 2) <= 0.8 * 20 * GiB  # both batches fit at once
    assert two < one


def test_tracing_runs_in_worker_processes_when_asked() -> None:
    import os

    assert local._trace_pool(0) is None  # the CPU path traces in this process
    pool = local._trace_pool(2)
    assert pool is not None
    try:
        assert pool.submit(os.getpid).result(timeout=WAIT) != os.getpid()
    finally:
        pool.shutdown()


def _traced_run(reader: Any, plan: CellPlan, shards: ShardStore, processes: int) -> None:
    """The tile pipeline on a fake device, tracing in `processes` worker processes."""
    fake = FakeDevice()
    run_tiles(
        reader,
        plan,
        Accelerated(fake, OomRetry(fake.predict, 2), PrecisionChoice("fp32", "t"), 2),
        shards,
        batch_size=2,
        min_area_px=1,
        read_threads=2,
        on_progress=lambda p: None,
        check_cancel=lambda: None,
        extract_workers=2,
        trace_processes=processes,
    )


def test_a_broken_tracing_pool_falls_back_to_threads_and_keeps_every_tile(
    tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes that die (a host script without a `__main__` guard re-imported in
    them) do not fail the job: its tiles are traced on the threads, with the same cells."""
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *a: Any, **k: Any) -> Any:
            raise BrokenProcessPool("a worker died")

        def shutdown(self, **k: Any) -> None:
            pass

    monkeypatch.setattr(local, "_trace_pool", lambda n: Broken() if n else None)
    with open_slide(sample_slide) as reader:
        plan = _plan(reader)
        stores = {n: ShardStore(tmp_path / str(n), {"p": 1}) for n in (0, 2)}
        for n, shards in stores.items():
            _traced_run(reader, plan, shards, n)
    assert _cells(stores[2], plan).keys() == _cells(stores[0], plan).keys()
    for key, cells in _cells(stores[0], plan).items():
        assert np.array_equal(_cells(stores[2], plan)[key], cells), key


def test_a_tile_pipeline_that_fails_to_start_leaves_no_tracing_pool_or_folder(
    tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracing processes and their results folder are made before the reader threads: a
    reader that fails to start (here: raises at once) ended the job with both left behind."""
    shut: list[bool] = []
    made: list[Path] = []

    class Pool:
        def shutdown(self, **k: Any) -> None:
            shut.append(True)

    def folder() -> Path:
        made.append(tmp_path / "results")
        made[-1].mkdir()
        return made[-1]

    class NoReader:
        def __init__(self, *a: Any, **k: Any) -> None:
            raise OSError("cannot start reading")

    monkeypatch.setattr(local, "_trace_pool", lambda n: Pool() if n else None)
    monkeypatch.setattr(local, "results_folder", folder)
    monkeypatch.setattr(local, "Prefetcher", NoReader)
    with open_slide(sample_slide) as reader:
        plan = _plan(reader)
        with pytest.raises(OSError, match="cannot start reading"):
            _traced_run(reader, plan, ShardStore(tmp_path / "s", {"p": 1}), 2)
    assert shut == [True] and len(made) == 1 and not made[0].exists()


@pytest.mark.parametrize("odd", [False, True])
def test_on_a_gpu_the_check_and_fill_run_on_the_tracing_threads_with_the_same_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd: bool
) -> None:
    """The model layer's nuclear check and classical fill (CPU work) leave the GPU job's infer
    threads for its tracing threads (`Accelerated.finisher`): the same cells and per-tile check
    counts as the model call doing them, out-of-domain tiles (`odd`: no check) included. The
    shipped model runs on the CPU through the GPU's runner (`DeviceSegmenter`)."""
    pytest.importorskip("torch")
    from tests.cells.specs import real_tumour_slide
    from wsitui.jobs.segment_cells.accel import DeviceSegmenter, job_postprocess
    from wsitui.models import finish
    from wsitui.models.loaded import load
    from wsitui.models.source import resolve

    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    seg = DeviceSegmenter(model, "fp32", job_postprocess(None, "auto"))
    threads: list[str] = []
    changed: list[bool] = []
    real = finish.finish_tile

    def finish_tile(rgb: np.ndarray, labels: np.ndarray, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name.split("_")[0])
        out = real(rgb, labels, **kwargs)
        changed.append(not np.array_equal(out[0], labels))
        return out

    monkeypatch.setattr(finish, "finish_tile", finish_tile)
    monkeypatch.setattr(local, "out_of_domain", lambda chromogen: odd)

    def run(accelerated: Accelerated, name: str, **shape: int) -> dict[str, np.ndarray]:
        shards = ShardStore(tmp_path / name, {"p": 1})
        run_tiles(
            reader,
            plan,
            accelerated,
            shards,
            batch_size=accelerated.batch_size,
            min_area_px=1,
            read_threads=2,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
            **shape,
        )
        out = {}
        for tile in plan.tiles:
            rec = load_records(shards, tile)
            assert rec is not None
            out[f"{tile.col},{tile.row}"] = np.concatenate([rec.xy.ravel(), rec.status, rec.info])
        return out

    choice = PrecisionChoice("fp32", "test")
    shape = {"inflight": 2, "queued": 1, "extract_workers": 2}  # as on a GPU
    with open_slide(real_tumour_slide(tmp_path)) as reader:
        plan = _plan(reader)  # 500 x 500 px of real H&E: 4 tiles
        whole = run(Accelerated(model, OomRetry(seg.predict, 2), choice, 2), "whole", **shape)
        in_model = set(threads)
        threads.clear()
        gpu = Accelerated(model, OomRetry(seg.predict, 2), choice, 2, finisher=seg.finish)
        apart = run(gpu, "apart", **shape)
    assert in_model == {"wsitui-infer"}  # before: in the model call
    assert set(threads) == {"wsitui-extract"} and len(threads) == len(plan.tiles)
    assert apart.keys() == whole.keys()
    for key, cells in whole.items():
        assert np.array_equal(apart[key], cells, equal_nan=True), key
    assert any(changed)  # the check or the fill changed the network's labels
    infos = [load_records(ShardStore(tmp_path / "apart", {"p": 1}), t).info for t in plan.tiles]
    assert {len(i) for i in infos} == ({2} if odd else {4})  # the check's counts, where it ran
    if not odd:
        assert sum(i[3] for i in infos) > 0  # it dropped detections
