"""Measuring in worker processes writes what the serial path writes, resumes from its shards,
and stops on cancel without waiting for a tile a worker is still measuring.

The job runs as the engine runs it (`_CellMeasurement`) with a stand-in JobContext: the engine
adds nothing per tile, and the stand-in lets a test cancel at an exact tile. The upstream
SEGMENT_CELLS job is stood in for by the generated slide's true nuclei (as test_fast_path)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.measure.test_fast_path import write_cells
from tests.procs import live_processes
from wsitui.core.digest import sha256_file
from wsitui.core.executor import JobCanceled, UpstreamJob
from wsitui.core.records import JobState
from wsitui.jobs.measure_cells import executor
from wsitui.jobs.measure_cells.executor import _CellMeasurement
from wsitui.jobs.measure_cells.measure import LoadedTile, TileInput
from wsitui.jobs.measure_cells.params import MeasureCellsParams
from wsitui.jobs.measure_cells.pipeline import TilePipeline

OUTPUTS = ("cells.geojson", "measurements.parquet")
PARAMS = MeasureCellsParams(tile_size=256)  # ~50 tiles of the sample slide: many in flight


@dataclass
class Ctx:
    """A stand-in JobContext; cancel is requested once `cancel_at` tiles are reported done."""

    job: Any
    params: Any
    results_dir: Path
    shards_dir: Path
    upstream: tuple[Any, ...]
    cancel_at: int | None = None
    checkpoint: Any = None
    reports: list[int] = field(default_factory=list)
    processes: int = 0  # the most worker processes seen at a tile's end
    canceled: threading.Event = field(default_factory=threading.Event)

    def report(self, done: int, total: int, counters: Any = None) -> None:
        self.reports.append(done)
        self.processes = max(self.processes, len(multiprocessing.active_children()))
        if self.cancel_at is not None and done >= self.cancel_at:
            self.canceled.set()

    def restart_progress(self, reason: str) -> None:
        pass

    def set_stage(self, stage: str) -> None:
        pass

    def cancel_requested(self) -> bool:
        return self.canceled.is_set()

    def check_cancel(self) -> None:
        if self.canceled.is_set():
            raise JobCanceled()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, sample_slide: Path) -> UpstreamJob:
    out = tmp_path_factory.mktemp("cells")
    write_cells(sample_slide, out, 2)
    manifest = {
        "mpp": 0.5,
        "tiles": {"scale": 1.0},
        "artifacts": [{"path": "cells.geojson", "sha256": sha256_file(out / "cells.geojson")}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return UpstreamJob(
        "cells", "cells-job", "SEGMENT_CELLS", str(sample_slide), JobState.SUCCEEDED, out
    )


def context(out: Path, up: UpstreamJob, workers: int, cancel_at: int | None = None) -> Ctx:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    job = SimpleNamespace(id="measure-job", attempt=1, slide=up.slide)
    params = PARAMS.model_copy(update={"workers": workers})
    return Ctx(job, params, out, out / "shards", (up,), cancel_at)


@pytest.fixture(autouse=True)
def small_slides_use_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample slide has ~1,300 cells: fewer than a worker is started for in a job."""
    monkeypatch.setattr(executor, "CELLS_PER_WORKER", 100)


def run(out: Path, up: UpstreamJob, workers: int, cancel_at: int | None = None) -> Ctx:
    ctx = context(out, up, workers, cancel_at)
    _CellMeasurement(ctx, ctx.params).run()  # type: ignore[arg-type]
    return ctx


def without_timings(out: Path) -> dict[str, Any]:
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("timings", "created_at"):
        manifest.pop(key)
    manifest["params"].pop("workers")  # what was asked for: all else is the same
    return manifest


def test_workers_write_byte_identical_outputs_and_resume_from_shards(
    tmp_path: Path, upstream: UpstreamJob
) -> None:
    serial = run(tmp_path / "serial", upstream, workers=1)
    parallel = run(tmp_path / "parallel", upstream, workers=2)
    assert serial.reports[-1] == parallel.reports[-1] > 20  # many tiles, so many in flight
    assert (serial.processes, parallel.processes) == (0, 2)
    for name in OUTPUTS:
        assert (tmp_path / "parallel" / name).read_bytes() == (
            tmp_path / "serial" / name
        ).read_bytes(), name
    assert without_timings(tmp_path / "parallel") == without_timings(tmp_path / "serial")

    # Canceled part-way on 2 workers: no outputs; resumed on 2 workers from its shards
    out = tmp_path / "resumed"
    with pytest.raises(JobCanceled):
        run(out, upstream, workers=2, cancel_at=5)
    for name in (*OUTPUTS, "manifest.json"):
        assert not (out / name).exists()
    ctx = run(out, upstream, workers=2)
    assert json.loads((out / "manifest.json").read_text())["shards"]["reused"] >= 5
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    assert ctx.reports == sorted(ctx.reports)  # progress in tile order


def stuck(started: Path, release: Path, tile: TileInput) -> np.ndarray:
    """A measurement that does not end until the test says so (in a worker process)."""
    started.touch()
    for _ in range(60_000):
        if release.exists():
            break
        time.sleep(0.001)
    (started.parent / "finished").touch()
    return np.zeros((len(tile.own), 1))


def test_cancel_does_not_wait_for_a_tile_being_measured_in_a_worker(tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    canceled = threading.Event()

    def check_cancel() -> None:
        if canceled.is_set():
            raise JobCanceled()

    def load(own: np.ndarray) -> LoadedTile:
        empty = np.zeros((0, 2))
        rgb = np.zeros((1, 1, 3), np.uint8)
        return LoadedTile([{}] * len(own), TileInput(own, empty, np.zeros(0, np.int64), 0, 0, rgb))

    try:
        with TilePipeline(load, partial(stuck, started, release), 2, check_cancel) as pipe:
            pending = pipe.start(np.arange(3))
            for _ in range(60_000):  # the worker process has begun the tile
                if started.exists():
                    break
                time.sleep(0.001)
            assert started.exists()
            canceled.set()
            with pytest.raises(JobCanceled):
                pipe.take(pending)
        # The pipeline is closed and the tile is still being measured: nothing waited for it
        assert not (tmp_path / "finished").exists()
    finally:
        release.touch()


def test_a_ctrl_c_or_hang_up_reaching_the_workers_kills_none(
    tmp_path: Path, upstream: UpstreamJob
) -> None:
    """A terminal sends Ctrl-C (SIGINT) and a hang-up (SIGHUP) to the whole process group:
    the job's process answers them (it stops the job, which resumes), the workers never. A
    worker killed by one failed the job ("a measuring worker process stopped") instead, even
    where the run was only stopping. Both are sent to each worker as soon as it starts."""
    import os
    import signal

    serial = run(tmp_path / "serial", upstream, workers=1)
    me, hit, done = os.getpid(), set[int](), threading.Event()

    def hunt() -> None:
        while not done.is_set():
            for pid, stat, cmd in live_processes():
                if pid not in hit and int(stat[1]) == me and b"spawn_main" in cmd:
                    hit.add(pid)
                    for sig in (signal.SIGINT, signal.SIGHUP):
                        os.kill(pid, sig)
            time.sleep(0.002)

    hunter = threading.Thread(target=hunt)
    hunter.start()
    try:
        parallel = run(tmp_path / "parallel", upstream, workers=2)
    finally:
        done.set()
        hunter.join()
    assert len(hit) == 2 and parallel.processes == 2
    assert parallel.reports[-1] == serial.reports[-1]
    for name in OUTPUTS:
        assert (tmp_path / "parallel" / name).read_bytes() == (
            tmp_path / "serial" / name
        ).read_bytes(), name


def test_a_writer_that_cannot_open_still_ends_the_pipeline(
    tmp_path: Path, upstream: UpstreamJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline makes its process pool and its workers' results folder (in the temp dir)
    before the output files open: a writer that failed to open (a full or read-only disk) left
    both, the folder until another job's start swept it. (The spawned pool starts its workers
    at the first tile only, so none ran yet.)"""
    from wsitui.jobs.measure_cells import pipeline

    ended: list[object] = []
    real = pipeline.TilePipeline._shut_down

    def shut_down(self: pipeline.TilePipeline, *, wait: bool) -> None:
        ended.append(self._folder if self._pool is not None else None)
        real(self, wait=wait)

    def no_writer(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline.TilePipeline, "_shut_down", shut_down)
    monkeypatch.setattr(executor, "MeasureWriter", no_writer)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path / "out", upstream, workers=2)
    assert len(ended) == 1 and isinstance(ended[0], Path)  # its pool was made, and ended
    deadline = time.monotonic() + 10  # removed once its (no) workers are gone
    while ended[0].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ended[0].exists()
