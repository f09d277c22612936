"""`v` on a job card opens the viewer on that job's slide with its workflow's outputs; esc
returns to the lanes."""

from __future__ import annotations

import shutil

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready, settle
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.tui.screens.viewer import ViewerScreen

pytestmark = pytest.mark.anyio


async def test_v_opens_the_viewer_on_the_selected_job(tmp_path, sample_dir):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        slide = str(sample_dir / "s.svs")
        job = JobSpec(id="mask", type="TISSUE_MASK", slide=slide, branch="A")
        status = app.engine.submit("alice", WorkflowSpec(name="w", jobs=(job,)), start=False)
        mask = status.jobs[0]
        out = app.engine.results_dir(mask)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_dir / "tissue.geojson", out / "tissue.geojson")
        app.selected_workflow = status.workflow.id  # its only card is the selection
        await settle(app, pilot)
        assert app.selected_job == mask.id
        await pilot.press("v")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ViewerScreen)
        assert str(screen.slide_path) == slide
        assert screen.tissue_path == out / "tissue.geojson" and screen.cells_path is None
        await pilot.press("v")  # not again on top of itself
        await pilot.pause()
        assert len(app.screen_stack) == 2
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ViewerScreen) and len(app.screen_stack) == 1
        await app.shutdown()
