"""The session's Dask side: no dask import until a dask job runs; the executor starts its own
LocalCluster for a job that names no scheduler, shows its workers' tiles/s, and closes it with
the engine."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from tests.cells.test_segment_cells import cells_wf
from wsitui.core.engine import Engine
from wsitui.core.records import JobState
from wsitui.jobs.segment_cells.backends.dask import DaskClusters
from wsitui.jobs.segment_cells.dask_info import dashboard_link
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.tissue_mask.executor import TissueMaskExecutor

pytestmark = pytest.mark.anyio


def test_wsitui_and_its_executors_import_without_dask():
    code = (
        "import sys, wsitui.cli, wsitui.jobs.registry as r; r.default_executors()\n"
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


async def test_a_dask_job_without_a_scheduler_runs_on_the_sessions_own_cluster(
    tmp_path, sample_slide
):
    clusters = DaskClusters(local_processes=False, local_workers=1)  # threads: a quick start
    cells = SegmentCellsExecutor(dask=clusters)
    seen: list = []
    async with Engine(tmp_path / "d", [TissueMaskExecutor(), cells]) as engine:
        w = engine.submit("t", cells_wf(sample_slide, backend="dask"))
        job_id = w.jobs[1].id
        with anyio.fail_after(300):
            # cells come only from tiles a worker finished (skipped background tiles count in
            # tiles_done from the start)
            await engine.wait_until(lambda: engine._jobs[job_id].counters.get("cells", 0) > 0)
        seen = cells.dask_status()
        running = engine._jobs[job_id]
        live_link = dashboard_link(running.stage, engine.results_dir(running))
        local = clusters._clusters["local"].local
        with anyio.fail_after(300):
            await engine.wait_idle()
        job = engine._jobs[job_id]
        assert job.state is JobState.SUCCEEDED, job.error
        done_link = dashboard_link(job.stage, engine.results_dir(job))
        mask = engine._jobs[w.jobs[0].id]
        assert dashboard_link(mask.stage, engine.results_dir(mask)) == ""
    assert len(seen) == 1 and seen[0].local and seen[0].dashboard.startswith("http")
    assert live_link == done_link == seen[0].dashboard  # the TUI's link, running or done
    assert sum(w.tiles for w in seen[0].workers) > 0 and seen[0].tiles_per_s > 0
    assert cells.dask_status() == [] and local.status.name == "closed"  # closed with the engine
