"""The session's own LocalCluster with two worker processes: a worker killed mid-job costs only
its tiles, and the job still yields the local backend's cells."""

from __future__ import annotations

import os
import signal

import numpy as np

from tests.dask.test_dask_backend import _plan, _run
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends import local as pipeline
from wsitui.jobs.segment_cells.backends.dask import DaskClusters
from wsitui.jobs.segment_cells.backends.local import shard_key
from wsitui.jobs.segment_cells.extract import CellRecords
from wsitui.models.classical import ClassicalModel


def test_a_worker_killed_mid_job_costs_only_its_tiles(tmp_path, sample_slide):
    from wsitui.slides.reader import open_slide

    plan = _plan(sample_slide)
    reference = ShardStore(tmp_path / "local", {})
    reader = open_slide(sample_slide)
    pipeline.run_tiles(
        reader,
        plan,
        ClassicalModel(),
        reference,
        batch_size=1,
        min_area_px=4,
        read_threads=1,
        on_progress=lambda p: None,
        check_cancel=lambda: None,
    )
    reader.close()

    clusters = DaskClusters(local_workers=2, local_threads=1)  # processes, as in a session
    client = clusters.client(None)
    killed: list[str] = []

    def on_progress(p: pipeline.Progress) -> None:
        if p.tiles_done >= plan.skipped + 3 and not killed:
            busy = client.processing()
            victim = max(busy, key=lambda w: len(busy[w]))
            pid = client.run(os.getpid, workers=[victim])[victim]
            killed.append(victim)
            os.kill(pid, signal.SIGKILL)  # no goodbye to the scheduler: a lost worker

    try:
        shards = ShardStore(tmp_path / "dask", {})
        run, _ = _run(clusters, None, sample_slide, shards, plan=plan, on_progress=on_progress)
    finally:
        clusters.close()
    assert killed
    assert sum(run.tiles_by_worker.values()) == len(plan.tiles)  # every tile, exactly once
    for t in plan.tiles:
        ours = CellRecords.from_bytes(shards.get_bytes(shard_key(t)))
        theirs = CellRecords.from_bytes(reference.get_bytes(shard_key(t)))
        assert np.array_equal(ours.status, theirs.status)
        assert ours.xy.shape == theirs.xy.shape and np.allclose(ours.xy, theirs.xy, atol=1.0)
