"""TISSUE_MASK under the real engine: stopped mid-run, it resumes where it was."""

from pathlib import Path

import pytest

from tests.slides.samples import record_reads
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.common.upstream import load_tissue_mask
from wsitui.jobs.registry import default_executors
from wsitui.jobs.tissue_mask import mask as tissue_mod
from wsitui.slides.reader import open_slide

pytestmark = pytest.mark.anyio


async def test_a_stopped_job_resumes_without_redoing_its_bands(
    single_level_slide: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(tissue_mod, "BAND_SOURCE_PIXELS", 2 * 2**20)  # many small bands
    with open_slide(single_level_slide) as r:
        plan = tissue_mod.plan_mask(r, tissue_mod.DEFAULTS)
        w0, h0 = r.dimensions
    assert len(plan.bands) >= 8
    spec = WorkflowSpec(
        name="w",
        jobs=(JobSpec(id="mask", type="TISSUE_MASK", slide=str(single_level_slide)),),
    )
    data = tmp_path / "data"
    seen: list[int] = []
    async with Engine(data, default_executors()) as engine:
        job_id = engine.submit("alice", spec).jobs[0].id

        def partway() -> bool:
            job = engine.job("alice", job_id)
            seen.append(job.tiles_done)
            return job.tiles_done >= job.tiles_total // 3 > 0

        await engine.wait_until(partway)
    # The engine stopped with the job running: it is resumed, not failed.
    reads = record_reads(monkeypatch)
    async with Engine(data, default_executors()) as engine:
        stopped = engine.job("alice", job_id)
        assert stopped.attempt == 1 and 0 < stopped.tiles_done < stopped.tiles_total

        def finished() -> bool:
            job = engine.job("alice", job_id)
            seen.append(job.tiles_done)
            return job.state.terminal

        await engine.wait_until(finished)
        job = engine.job("alice", job_id)
        assert job.state is JobState.SUCCEEDED and job.attempt == 1
        out = engine.results_dir(job)
    assert seen == sorted(seen)  # tiles_done never went back, across the restart
    # Only the bands not read before the stop were read again.
    read = sum(w * h for w, h in reads if w * h > 256 * 256)
    assert read < 0.8 * w0 * h0
    mask, _ = load_tissue_mask(out)
    assert mask.any()
