"""The classical model's tiles on worker processes (`classical_pool.py`): the same cells as on
the job's own thread, a dead worker never fails the job, a cancel or the end of a job leaves no
worker behind, and `workers` is checked like MEASURE_CELLS' own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import numpy as np
import pytest
from pydantic import ValidationError

from tests.cells.test_segment_cells import cells_wf, executors, run_to_end
from tests.procs import stat_fields
from wsitui.core.engine import Engine
from wsitui.core.records import JobState
from wsitui.jobs.common.cpus import available_cpus
from wsitui.jobs.segment_cells.classical_pool import (
    MIN_TILES,
    ClassicalPool,
    classical_pipeline,
    processes_for,
    worker_bytes,
)
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.models import classical
from wsitui.slides.patches import render_patch
from wsitui.slides.style import dense_style

pytestmark = pytest.mark.anyio


def _tiles(n: int, side: int = 160) -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.stack(
        [render_patch(dense_style(rng, name="d"), (side, side), 4100 + i, 0.5)[0] for i in range(n)]
    )


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def test_how_many_workers_a_classical_job_gets() -> None:
    # absent: one per core, within the tiles to do and the memory budget
    assert processes_for(None, 500, 16, 672, 8.0) == 16
    assert processes_for(None, 500, 1, 672, 8.0) == 0  # one core: the job's own thread
    assert processes_for(None, MIN_TILES - 1, 16, 672, 8.0) == 0  # start-up would not pay
    assert processes_for(None, MIN_TILES, 16, 672, 8.0) == MIN_TILES
    budget = 1.5  # the default memory_gb: the workers that fit in it, never over it
    n = processes_for(None, 500, 64, 672, budget)
    assert 2 <= n < 64
    assert 0.4e9 + n * worker_bytes(672) <= budget * 1e9
    assert processes_for(None, 500, 64, 4192, budget) == 0  # huge tiles: not even two fit
    # asked: as asked, 1 the job's own thread; never more than the budget holds or the tiles
    assert processes_for(1, 500, 16, 672, 1.5) == 0
    assert processes_for(3, 500, 16, 672, 1.5) == 3
    assert processes_for(3, 2, 16, 672, 1.5) == 2
    assert processes_for(8, 0, 16, 672, 1.5) == 0  # nothing left to do: no workers
    assert processes_for(16, 500, 16, 1600, 1.5) == processes_for(None, 500, 16, 1600, 1.5) == 2
    assert processes_for(16, 500, 16, 4192, 1.5) == 0
    # tracing moves to processes once one thread could not keep up with the workers
    assert classical_pipeline(2).trace_processes == 0
    assert classical_pipeline(16).trace_processes >= 3
    assert classical_pipeline(4).inflight == 5


def test_workers_is_checked_in_one_line() -> None:
    assert SegmentCellsParams(workers=1).workers == 1
    for bad in (0, available_cpus() + 1):
        with pytest.raises(ValidationError, match=r"workers = -?\d+ is not 1 to \d+"):
            SegmentCellsParams(workers=bad)
    with pytest.raises(ValidationError):
        SegmentCellsParams(workers=True)  # strict: not one worker without a word


def test_the_pool_gives_the_models_labels_and_survives_a_dead_worker(caplog) -> None:
    tiles = _tiles(4)
    expected = np.stack([classical.segment_tile(t) for t in tiles]).astype(np.int32)
    pool = ClassicalPool(1)
    try:
        assert np.array_equal(pool.predict(tiles), expected)
        (pid,) = pool._pool._processes  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
        time.sleep(0.5)
        assert np.array_equal(pool.predict(tiles), expected)  # on the calling thread now
        assert np.array_equal(pool.predict(tiles[:1]), expected[:1])
        assert pool.failed  # for the manifest
    finally:
        pool.close()
    assert "classical worker processes failed" in caplog.text


SENDS_BACK = """
import sys
import numpy as np
from tests.cells.test_classical_workers import _tiles
from wsitui.jobs.segment_cells.classical_pool import ClassicalPool

pool = ClassicalPool(1)
tile = _tiles(1, 1024)
want = pool.predict(tile)
(pid,) = pool._pool._processes
print(pid, flush=True)
sys.stdin.readline()
got = pool.predict(tile)
print("done", bool(np.array_equal(got, want)), bool(pool.failed), flush=True)
pool.close()
"""


def _cpu_ticks(pid: int) -> int:
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_worker_killed_while_it_sends_its_tile_back_hangs_nothing(tmp_path: Path) -> None:
    """A worker's result went back through the pool's pipe (a 1024² tile's labels: 4 MB); one
    killed mid-send (a cancel's terminate, the OOM killer) left half a message there, and the
    pool's reader waited for its rest for good: the job's thread waited for its tile forever
    and the process hung at exit (CI ran an hour past its last test). Here the job's process
    is stopped while its worker segments, so the worker, done, is left in its send (or, now,
    past it, waiting for its next tile); it is killed then and the process let go on."""
    repo = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDS_BACK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    try:
        worker = int(proc.stdout.readline())  # type: ignore[union-attr]
        busy = _cpu_ticks(worker)
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while _cpu_ticks(worker) < busy + 5 and time.monotonic() < deadline:
            time.sleep(0.002)  # until the worker segments the tile (50 ms of CPU: not idle)
        os.kill(proc.pid, signal.SIGSTOP)  # nothing reads what the worker sends back
        still, ticks = time.monotonic(), _cpu_ticks(worker)
        while time.monotonic() - still < 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)  # until it has segmented the tile and is blocked
            now = _cpu_ticks(worker)
            if now != ticks:
                still, ticks = time.monotonic(), now
        os.kill(worker, signal.SIGKILL)
        os.kill(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.split() == ["done", "True", out.split()[2]], out  # the same labels either way


def test_labels_a_worker_cannot_write_send_the_tiles_to_the_jobs_thread() -> None:
    """A worker hands a tile's labels back through a file (core/pool_results.py); where it
    cannot write one (a full temporary disk; here its folder removed) the job goes on, on its
    own thread, with the same labels, and says why in the manifest."""
    tiles = _tiles(2)
    expected = np.stack([classical.segment_tile(t) for t in tiles]).astype(np.int32)
    pool = ClassicalPool(1)
    try:
        shutil.rmtree(pool._dir)
        assert np.array_equal(pool.predict(tiles), expected)
        assert "could not hand its result back" in pool.failed
    finally:
        pool.close()


def test_no_room_for_a_results_folder_runs_the_tiles_on_the_jobs_thread(monkeypatch) -> None:
    from wsitui.jobs.segment_cells import classical_pool

    def full() -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(classical_pool, "results_folder", full)
    tiles = _tiles(2)
    expected = np.stack([classical.segment_tile(t) for t in tiles]).astype(np.int32)
    pool = ClassicalPool(1)
    try:
        assert np.array_equal(pool.predict(tiles), expected)
        assert "No space left" in pool.failed
    finally:
        pool.close()


def test_closing_now_drops_the_tile_a_worker_runs() -> None:
    """A cancel is answered at once, not after the tiles on the workers (a 4096² tile takes
    many seconds); the worker is gone and the call that waited for it raises."""
    pool = ClassicalPool(1)
    pool.predict(_tiles(1))
    (pid,) = pool._pool._processes  # type: ignore[union-attr]
    big = np.tile(_tiles(1, 512), (1, 8, 8, 1))  # 4096 x 4096
    outcome: list[BaseException | np.ndarray] = []

    def call() -> None:
        try:
            outcome.append(pool.predict(big))
        except BaseException as exc:  # what the caller gets
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)  # the tile is on the worker
    began = time.monotonic()
    pool.close(now=True)
    closing = time.monotonic() - began
    caller.join(30)
    assert not caller.is_alive() and isinstance(outcome[0], BaseException)
    assert closing < 3.0
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_close_ends_the_workers() -> None:
    pool = ClassicalPool(2)
    pool.predict(_tiles(2))
    pids = list(pool._pool._processes)  # type: ignore[union-attr]
    pool.close()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in pids)


def _cells(out: Path) -> list[str]:
    features = json.loads((out / "cells.geojson").read_text())["features"]
    return sorted(json.dumps(f["geometry"]) for f in features)


async def test_a_job_on_workers_finds_the_same_cells_as_on_its_thread(tmp_path, sample_slide):
    engine, one = await run_to_end(tmp_path / "one", cells_wf(sample_slide, workers=1))
    ref = engine.results_dir(engine._jobs[one])
    engine, two = await run_to_end(tmp_path / "two", cells_wf(sample_slide, workers=2))
    job = engine._jobs[two]
    assert job.state is JobState.SUCCEEDED, job.error
    out = engine.results_dir(job)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["workers"] == 2
    assert json.loads((ref / "manifest.json").read_text())["model"]["workers"] == 1
    cells = _cells(out)
    assert len(cells) > 500 and cells == _cells(ref)


async def test_a_cancel_leaves_no_worker_behind(tmp_path, sample_slide):
    before = _children_of_forkservers()
    async with Engine(tmp_path / "d", executors()) as engine:
        spec = cells_wf(sample_slide, workers=2, tile_size=256)
        cells_id = engine.submit("t", spec).jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 3)
            engine.cancel("t", cells_id)
            await engine.wait_until(lambda: engine._jobs[cells_id].state.terminal)
        assert engine._jobs[cells_id].state is JobState.CANCELED
    deadline = time.monotonic() + 10
    while _children_of_forkservers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children_of_forkservers() - before


def _children_of_forkservers() -> set[int]:
    """Live processes whose parent is a multiprocessing fork server of this test process."""
    me = os.getpid()
    procs: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
            cmd[int(d.name)] = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "\nState:\tZ" in status:
            continue
        procs[int(d.name)] = int(status.split("\nPPid:\t")[1].split()[0])
    servers = {p for p, parent in procs.items() if parent == me and "forkserver" in cmd[p]}
    return {p for p, parent in procs.items() if parent in servers}


async def test_a_worker_killed_mid_job_leaves_the_same_cells_and_a_note(tmp_path, sample_slide):
    engine, one = await run_to_end(tmp_path / "one", cells_wf(sample_slide, workers=1))
    ref = engine.results_dir(engine._jobs[one])
    before = _children_of_forkservers()
    async with Engine(tmp_path / "d", executors()) as engine:
        cells_id = engine.submit("t", cells_wf(sample_slide, workers=2)).jobs[1].id
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[cells_id].tiles_done >= 2)
            victims = _children_of_forkservers() - before
            assert victims
            os.kill(min(victims), signal.SIGKILL)  # e.g. the kernel's OOM killer
            await engine.wait_idle()
        job = engine._jobs[cells_id]
        out = engine.results_dir(job)
    assert job.state is JobState.SUCCEEDED, job.error
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["workers_failed"]
    assert any("classical worker processes stopped" in w for w in manifest["warnings"])
    assert _cells(out) == _cells(ref)


async def test_a_cancel_among_jobs_on_workers_leaves_the_others_and_a_retry_resumes(
    tmp_path, tmp_path_factory
):
    """Three tenants' classical jobs on workers, two at once (a tenant waits): one canceled
    mid-run ends at once, the other jobs' pools (on the same fork server) are untouched and
    find the cells of a run on the job's own thread; its retry keeps the tiles it had and
    ends with the same cells too; no worker is left."""
    from tests.slides.samples import sample_slide_path

    slides = {
        "ann": sample_slide_path(tmp_path_factory, (2048, 1536), 3),
        "bob": sample_slide_path(tmp_path_factory, (2048, 1536), 4),
        "cat": sample_slide_path(tmp_path_factory, (2048, 1536), 3),
    }
    ref = {}
    for seed, slide in ((3, slides["ann"]), (4, slides["bob"])):
        engine, one = await run_to_end(
            tmp_path / f"one{seed}", cells_wf(slide, workers=1, tile_size=256)
        )
        ref[slide] = _cells(engine.results_dir(engine._jobs[one]))
    before = _children_of_forkservers()
    async with Engine(tmp_path / "d", executors(), max_workers=2, max_active_users=2) as engine:
        ids = {
            t: engine.submit(t, cells_wf(s, workers=2, tile_size=256)).jobs[1].id
            for t, s in slides.items()
        }
        bob = ids["bob"]
        with anyio.fail_after(300):
            await engine.wait_until(lambda: engine._jobs[bob].tiles_done >= 3)
            assert engine._jobs[ids["ann"]].state is JobState.RUNNING
            began = time.monotonic()
            engine.cancel("bob", bob)
            await engine.wait_until(lambda: engine._jobs[bob].state.terminal)
            assert time.monotonic() - began < 3.0
            assert engine._jobs[bob].state is JobState.CANCELED
            await engine.wait_idle()
            engine.retry("bob", bob)
            await engine.wait_until(lambda: engine._jobs[bob].state is JobState.RUNNING)
            await engine.wait_idle()
        for tenant, job_id in ids.items():
            job = engine._jobs[job_id]
            assert job.state is JobState.SUCCEEDED, (tenant, job.error)
            out = engine.results_dir(job)
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["model"]["workers"] == 2 and "workers_failed" not in manifest["model"]
            assert _cells(out) == ref[slides[tenant]], tenant
        shards = json.loads((engine.results_dir(engine._jobs[bob]) / "manifest.json").read_text())
        assert shards["shards"]["reused"] >= 3  # the tiles done before the cancel
    deadline = time.monotonic() + 10
    while _children_of_forkservers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children_of_forkservers() - before
