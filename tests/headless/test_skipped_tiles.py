"""A SEGMENT_CELLS job's tiles as `wsitui run` and `wsitui status` say them add up to what its
manifest counts: its tiles with tissue (`tiles.processed`, the job's total: its work) and
the background tiles it skipped (`tiles.skipped`), `tiles.total` in all. They said `19/19`
beside a manifest of 24 tiles, 5 skipped; they say `19/19 +5 skipped`."""

from __future__ import annotations

import io
import json

import anyio
import pytest
from rich.console import Console

from tests.cells.test_hostile_params_and_shards import cells_wf
from tests.cells.test_segment_cells import executors
from wsitui.core.engine import Engine
from wsitui.core.records import JobState
from wsitui.headless.display import summary_table
from wsitui.headless.status import status_table
from wsitui.session.summary import summarize

pytestmark = pytest.mark.anyio


def _text(renderable: object) -> str:
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_a_cells_jobs_tiles_add_up_to_its_manifests(tmp_path, sample_slide):
    data = tmp_path / "d"
    async with Engine(data, executors()) as engine:
        w = engine.submit("t", cells_wf(sample_slide))
        with anyio.fail_after(300):
            await engine.wait_idle()
        status = engine.workflow("t", w.workflow.id)
        job = engine.job("t", w.jobs[1].id)
        manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
        run_text = _text(summary_table(engine, [status]))
    assert job.state is JobState.SUCCEEDED, job.error
    tiles = manifest["tiles"]
    assert tiles["skipped"] > 0 and tiles["processed"] + tiles["skipped"] == tiles["total"]
    assert (job.tiles_done, job.tiles_total) == (tiles["processed"], tiles["processed"])
    said = f"{tiles['processed']}/{tiles['processed']} +{tiles['skipped']} skipped"
    summary = summarize(status.workflow, status.jobs, waiting=(), results_root=data / "results")
    for face, text in (("run", run_text), ("status", _text(status_table(data, [summary])))):
        (row,) = [line for line in text.splitlines() if "SEGMENT_CELLS" in line]
        assert said in row, (face, text)
