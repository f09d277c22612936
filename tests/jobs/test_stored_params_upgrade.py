"""Params stored by an earlier, lax version (`tile_size = "512"` was read as 512) are read once
as what they plainly mean and stored so when the engine opens, instead of failing their jobs
now that params are strict; what cannot be read so fails its job with a line that says how
to give it anew."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.slides.samples import sample_slide_path
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.core.validation import lenient_params
from wsitui.jobs.registry import default_executors
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.jobs.tissue_mask.params import TissueMaskParams

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (1024, 1024), 5)


async def held_job_stored_with(data: Path, slide: Path, params: dict[str, object]) -> str:
    """A held TISSUE_MASK job submitted now, its params then written as an earlier version
    wrote them (straight into state.db)."""
    spec = WorkflowSpec(name="w", jobs=(JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide)),))
    async with Engine(data, default_executors()) as engine:
        job_id = engine.submit("alice", spec, start=False).jobs[0].id
    db = sqlite3.connect(data / "state.db")
    db.execute("UPDATE jobs SET params=? WHERE id=?", (json.dumps(params), job_id))
    db.commit()
    db.close()
    return job_id


def stored_params(data: Path, job_id: str) -> dict[str, object]:
    db = sqlite3.connect(data / "state.db")
    (text,) = db.execute("SELECT params FROM jobs WHERE id=?", (job_id,)).fetchone()
    db.close()
    return json.loads(text)


async def run_held(data: Path, job_id: str):
    async with Engine(data, default_executors()) as engine:
        job = engine.job("alice", job_id)
        engine.start_workflow("alice", job.workflow_id)
        await engine.wait_until(lambda: engine.job("alice", job_id).state.terminal)
        return engine.job("alice", job_id)


async def test_lax_params_of_a_stored_job_are_read_once_and_stored_anew(tmp_path, slide):
    data = tmp_path / "data"
    lax = {"tile_size": "256", "min_tissue_fraction": "0.1", "tile_masks": "true", "level": 0.0}
    job_id = await held_job_stored_with(data, slide, lax)
    job = await run_held(data, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    want = {"tile_size": 256, "min_tissue_fraction": 0.1, "tile_masks": True, "level": 0}
    assert job.params == want
    stored = stored_params(data, job_id)
    assert stored == want and isinstance(stored["level"], int)


async def test_stored_params_without_a_plain_meaning_fail_saying_how_to_fix_it(tmp_path, slide):
    data = tmp_path / "data"
    job_id = await held_job_stored_with(data, slide, {"tile_size": "big", "archive": "false"})
    job = await run_held(data, job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None and "\n" not in job.error
    assert job.error.startswith("job 'mask': params.tile_size: Input should be a valid integer")
    assert "give the job anew with the param fixed" in job.error
    assert "rename the workflow" in job.error
    assert stored_params(data, job_id) == {"tile_size": "big", "archive": "false"}  # as it was


@pytest.mark.parametrize(
    ("model", "params", "want"),
    [
        (TissueMaskParams, {"tile_size": "512"}, {"tile_size": 512}),
        (TissueMaskParams, {"tile_size": " -0 "}, None),  # 0 is out of range: not readable
        (TissueMaskParams, {"tile_size": 512.0}, {"tile_size": 512}),
        (TissueMaskParams, {"tile_size": 512.5}, None),
        (TissueMaskParams, {"tile_size": True}, None),  # true is no tile size
        (TissueMaskParams, {"min_tissue_fraction": "1e-1"}, {"min_tissue_fraction": 0.1}),
        (TissueMaskParams, {"min_tissue_fraction": "nan"}, None),
        (TissueMaskParams, {"archive": "False"}, {"archive": False}),
        (TissueMaskParams, {"archive": "yes"}, None),
        (TissueMaskParams, {"tile_size": 512}, None),  # fine as it is: nothing to change
        (SegmentCellsParams, {"batch_size": "8"}, {"batch_size": 8}),
        (SegmentCellsParams, {"batch_size": "auto"}, None),
        (SegmentCellsParams, {"tile_size": "576", "nope": 1}, None),  # a removed param
    ],
)
def test_only_values_with_a_plain_meaning_are_read_leniently(model, params, want):
    assert lenient_params(model, params) == want
