"""SEGMENT_CELLS on a Dask cluster: the same cells as the local backend, resume from shards,
cancel within about a second, and one clear line when the cluster cannot do the work."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from tests.cells.test_segment_cells import _rows, cells_wf, executors, run_to_end
from wsitui.core.engine import Engine
from wsitui.core.executor import JobError
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends import dask as dask_backend
from wsitui.jobs.segment_cells.backends import dask_worker
from wsitui.jobs.segment_cells.backends.dask import DaskClusters
from wsitui.jobs.segment_cells.backends.local import shard_key
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.jobs.segment_cells.plan import plan_tiles
from wsitui.models.source import classical_source
from wsitui.slides.reader import open_slide

pytestmark = pytest.mark.anyio


def _features(out: Path) -> dict[tuple[int, int], np.ndarray]:
    """Cells by rounded centroid -> outline vertices (ids differ between jobs)."""
    feats = json.loads((out / "cells.geojson").read_text())["features"]
    by: dict[tuple[int, int], np.ndarray] = {}
    for f in feats:
        ring = np.asarray(f["geometry"]["coordinates"][0], float)
        by[tuple(np.round(ring[:-1].mean(axis=0)).astype(int))] = ring
    return by


async def test_the_dask_backend_gives_the_same_cells_as_the_local_one(
    tmp_path, sample_slide, threads_cluster
):
    local_engine, local_id = await run_to_end(tmp_path / "local", cells_wf(sample_slide))
    local_job = local_engine._jobs[local_id]
    dask_spec = cells_wf(
        sample_slide, backend="dask", scheduler_address=threads_cluster.scheduler_address
    )
    dask_engine, dask_id = await run_to_end(tmp_path / "dask", dask_spec)
    job = dask_engine._jobs[dask_id]
    assert job.state is JobState.SUCCEEDED, job.error
    local_out, out = local_engine.results_dir(local_job), dask_engine.results_dir(job)

    assert _rows((out / "cells.csv").read_text()) == _rows((local_out / "cells.csv").read_text())
    ours, theirs = _features(out), _features(local_out)
    assert len(ours) == len(theirs) == job.counters["cells"] == local_job.counters["cells"] > 100
    for key, ring in theirs.items():
        assert ours[key].shape == ring.shape and np.abs(ours[key] - ring).max() <= 1.0

    manifest = json.loads((out / "manifest.json").read_text())
    local_manifest = json.loads((local_out / "manifest.json").read_text())
    assert manifest["backend"] == "dask" and local_manifest["backend"] == "local"
    # One backend contract: the same timing keys, the same tile and model records.
    assert set(manifest["timings"]) == set(local_manifest["timings"])
    assert set(manifest["tiles"]) == set(local_manifest["tiles"])
    assert manifest["model"]["sha256"] == local_manifest["model"]["sha256"]
    assert manifest["dask"]["scheduler"] == threads_cluster.scheduler_address
    assert sum(manifest["dask"]["tiles_by_worker"].values()) == manifest["tiles"]["processed"]
    assert job.tiles_done == job.tiles_total == manifest["tiles"]["processed"]  # tissue tiles
    # The model was loaded once per worker that ran tiles, not once per tile.
    loads = threads_cluster.get_client().run(dask_worker.model_loads)
    per_worker = [sum(v.values()) for v in loads.values()]
    assert all(n <= 1 for n in per_worker) and sum(per_worker) >= 1


def _plan(slide: Path):
    reader = open_slide(slide)
    plan = plan_tiles(
        reader, slide_mpp=0.5, model_px=0.5, tile_size=512, max_nucleus_um=20, tissue=None
    )
    reader.close()
    return plan


def _run(clusters: DaskClusters, address: str | None, slide: Path, shards: ShardStore, **kw):
    progress: list[int] = []
    kw.setdefault("check_cancel", lambda: None)
    kw.setdefault("on_progress", lambda p: progress.append(p.tiles_done))
    run = clusters.run_tiles(
        address,
        slide=str(slide),
        plan=kw.pop("plan", None) or _plan(slide),
        source=classical_source(),
        device=kw.pop("device", "cpu"),
        shards=shards,
        min_area_px=4,
        set_stage=lambda s: None,
        **kw,
    )
    return run, progress


def test_a_resumed_dask_run_submits_only_the_tiles_without_a_shard(
    tmp_path, sample_slide, threads_cluster
):
    plan = _plan(sample_slide)
    clusters = DaskClusters()
    try:
        full = ShardStore(tmp_path / "full", {"p": 1})
        _run(clusters, threads_cluster.scheduler_address, sample_slide, full, plan=plan)
        part = ShardStore(tmp_path / "part", {"p": 1})
        kept = plan.tiles[: len(plan.tiles) // 2]
        for t in kept:
            part.put_bytes(shard_key(t), full.get_bytes(shard_key(t)))
        run, progress = _run(
            clusters, threads_cluster.scheduler_address, sample_slide, part, plan=plan
        )
    finally:
        clusters.close()
    assert sum(run.tiles_by_worker.values()) == len(plan.tiles) - len(kept)
    assert progress[0] == plan.skipped + len(kept) and progress[-1] == plan.total
    assert progress == sorted(progress)
    for t in plan.tiles:  # every tile's records, byte for byte
        key = shard_key(t)
        assert CellRecords.from_bytes(part.get_bytes(key)).xy.shape == (
            CellRecords.from_bytes(full.get_bytes(key)).xy.shape
        )


def _slow_tile(*args: object) -> object:
    time.sleep(4)  # longer than a cancel may take
    return dask_worker.segment_tile(*args)


def test_cancel_stops_the_job_and_its_futures_within_about_a_second(
    tmp_path, sample_slide, threads_cluster, monkeypatch
):
    # Threads cluster: the task function is looked up in this process, so it can be slowed.
    monkeypatch.setattr(dask_backend, "segment_tile", _slow_tile)
    asked: list[float] = []
    timer = threading.Timer(1.0, lambda: asked.append(time.monotonic()))

    def check_cancel() -> None:
        if asked:
            raise RuntimeError("canceled")

    clusters = DaskClusters()
    client = threads_cluster.get_client()
    try:
        timer.start()
        with pytest.raises(RuntimeError, match="canceled"):
            _run(
                clusters,
                threads_cluster.scheduler_address,
                sample_slide,
                ShardStore(tmp_path / "s", {}),
                check_cancel=check_cancel,
            )
        answered = time.monotonic()

        def job_tasks(dask_scheduler) -> list[str]:
            return [str(k) for k in dask_scheduler.tasks if "wsitui-cells" in str(k)]

        deadline = time.monotonic() + 1.0
        while client.run_on_scheduler(job_tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = client.run_on_scheduler(job_tasks)
    finally:
        timer.cancel()
        clusters.close()
    assert answered - asked[0] < 1.0  # not the 4 s a tile takes
    assert left == []  # the scheduler forgot the job's outstanding tiles


def test_a_gpu_job_on_a_cluster_without_a_gpu_worker_fails_with_one_line(
    tmp_path, sample_slide, threads_cluster
):
    clusters = DaskClusters()
    try:
        with pytest.raises(JobError, match=r"no worker .* has a GPU: start workers with") as e:
            _run(
                clusters,
                threads_cluster.scheduler_address,
                sample_slide,
                ShardStore(tmp_path / "s", {}),
                device="cuda",
            )
    finally:
        clusters.close()
    assert "\n" not in str(e.value)


def test_gpu_tiles_ask_the_scheduler_for_a_gpu_worker(tmp_path, sample_slide):
    import distributed

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, resources={"GPU": 1}
    ) as cluster:
        client = cluster.get_client()
        wanted: list[object] = []

        def restrictions(dask_scheduler) -> list[object]:
            return [
                ts.resource_restrictions
                for k, ts in dask_scheduler.tasks.items()
                if "wsitui-cells" in str(k)
            ]

        def on_progress(p) -> None:
            if not wanted:
                wanted.extend(client.run_on_scheduler(restrictions))

        clusters = DaskClusters()
        try:
            # The classical model ignores the device: the tiles run on the "GPU" worker.
            _run(
                clusters,
                cluster.scheduler_address,
                sample_slide,
                ShardStore(tmp_path / "s", {}),
                device="cuda",
                on_progress=on_progress,
            )
        finally:
            clusters.close()
    assert wanted and all(r == {"GPU": 1} for r in wanted)


async def test_an_unreachable_scheduler_fails_its_job_with_one_line_and_nothing_else(
    tmp_path, sample_slide
):
    spec = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="mask", type="TISSUE_MASK", slide=str(sample_slide)),
            JobSpec(
                id="cells",
                type="SEGMENT_CELLS",
                slide=str(sample_slide),
                branch="b",
                params={
                    "model": "classical",
                    "backend": "dask",
                    "scheduler_address": "tcp://127.0.0.1:9",
                },
            ),
        ),
    )
    async with Engine(tmp_path / "d", executors()) as engine:
        w = engine.submit("t", spec)
        with anyio.fail_after(120):
            await engine.wait_idle()
        mask, cells = (engine._jobs[j.id] for j in w.jobs)
    assert mask.state is JobState.SUCCEEDED
    assert cells.state is JobState.FAILED
    assert cells.error and "\n" not in cells.error
    assert "dask scheduler tcp://127.0.0.1:9 cannot be reached" in cells.error


def test_a_cluster_lost_mid_job_fails_it_with_one_line_and_a_retry_resumes_once_it_is_back(
    tmp_path, sample_slide
):
    import socket

    import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"

    def cluster() -> distributed.LocalCluster:
        return distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            scheduler_port=port,
            host="127.0.0.1",
            dashboard_address=":0",
        )

    plan = _plan(sample_slide)
    shards = ShardStore(tmp_path / "s", {})
    clusters = DaskClusters()
    first = cluster()
    stopped: list[int] = []

    def on_progress(p) -> None:
        if p.tiles_done >= plan.skipped + 3 and not stopped:
            stopped.append(p.tiles_done)
            first.close()  # the scheduler and its worker go away mid-job

    try:
        began = time.monotonic()
        with pytest.raises(JobError) as e:
            _run(clusters, address, sample_slide, shards, plan=plan, on_progress=on_progress)
        failed_after = time.monotonic() - began
        assert "\n" not in str(e.value) and "retry" in str(e.value)
        assert address in str(e.value)
        with cluster():  # back: the retry reconnects and does only the tiles left
            run, progress = _run(clusters, address, sample_slide, shards, plan=plan)
    finally:
        first.close()
        clusters.close()
    assert failed_after < 60
    assert progress[0] >= stopped[0] and progress[-1] == plan.total
    assert 0 < sum(run.tiles_by_worker.values()) < len(plan.tiles)


def test_at_most_a_window_of_tiles_is_in_flight_whatever_the_slide_size(
    tmp_path, sample_slide, threads_cluster
):
    client = threads_cluster.get_client()
    held: list[int] = []

    def job_tasks(dask_scheduler) -> int:
        return sum("wsitui-cells" in str(k) for k in dask_scheduler.tasks)

    plan = _plan(sample_slide)
    clusters = DaskClusters()
    try:
        run, _ = _run(
            clusters,
            threads_cluster.scheduler_address,
            sample_slide,
            ShardStore(tmp_path / "s", {}),
            plan=plan,
            window=3,
            on_progress=lambda p: held.append(client.run_on_scheduler(job_tasks)),
        )
    finally:
        clusters.close()
    assert len(plan.tiles) > 10 and sum(run.tiles_by_worker.values()) == len(plan.tiles)
    assert 0 < max(held) <= 4  # the window (plus one being released), not the slide's tiles


def test_a_result_that_cannot_be_waited_for_fails_the_job_with_one_line_not_a_hang(
    tmp_path, sample_slide, threads_cluster, monkeypatch
):
    import distributed

    # distributed's own tracker of a future raises (a connection that breaks while a result
    # is fetched): the loop only logs that, and the future would never come out.
    async def broken_tracker(self, future) -> None:
        raise OSError("connection reset while fetching\nsecond line")

    monkeypatch.setattr(distributed.as_completed, "_track_future", broken_tracker)
    give_up = time.monotonic() + 30

    def check_cancel() -> None:  # ends a hang (the failure this test is about) as a failure
        if time.monotonic() > give_up:
            raise RuntimeError("hung: the job never learned its tiles' results")

    clusters = DaskClusters()
    try:
        with pytest.raises(JobError) as e:
            _run(
                clusters,
                threads_cluster.scheduler_address,
                sample_slide,
                ShardStore(tmp_path / "s", {}),
                check_cancel=check_cancel,
            )
    finally:
        clusters.close()
    line = str(e.value)
    assert "\n" not in line
    assert "waiting for its result" in line and "OSError: connection reset" in line
    assert line.endswith("retry the job")
