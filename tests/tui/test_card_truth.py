"""What a card or a workflow row says at a glance agrees with the job's stored truth."""

from __future__ import annotations

import json

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import card_text, screen_text, settle, start_one_job
from wsitui.core.paths import results_dir
from wsitui.core.records import Job, JobState
from wsitui.tui.times import times_text
from wsitui.tui.widgets.lanes import JobCard
from wsitui.tui.widgets.workflows import WorkflowRow


def job(state: JobState, counters: dict[str, int], **kw: object) -> Job:
    return Job(
        "w.j",
        "j",
        "w",
        "t",
        "SEGMENT_CELLS",
        "s.svs",
        "A",
        (),
        {},
        state,
        counters=counters,
        **kw,  # type: ignore[arg-type]
    )


def test_a_finished_job_that_found_no_cells_says_so():
    """A SEGMENT_CELLS job on an empty mask (every tile skipped) and the MEASURE_CELLS after
    it stored cells 0; their cards read "ran 0.1 s · skipped 16" and "ran 0.1 s", as if they
    had found cells like any other."""
    done = {"started_at": 10.0, "finished_at": 10.1}
    assert times_text(
        job(JobState.SUCCEEDED, {"cells": 0, "skipped": 16}, **done), 20.0, None, None
    ) == ("ran 0.1 s · cells 0 · skipped 16")
    assert times_text(job(JobState.SUCCEEDED, {"cells": 0}, **done), 20.0, None, None) == (
        "ran 0.1 s · cells 0"
    )
    # A running job's zero is no news yet (it has not found its first cell).
    running = job(JobState.RUNNING, {"cells": 0}, started_at=10.0)
    assert times_text(running, 15.0, None, None) == "00:05 · ETA --:--"


@pytest.mark.anyio
async def test_a_running_workflow_never_reads_100_percent(tmp_path):
    """A workflow whose last job had done all its tiles but still wrote its outputs read
    "RUNNING 100%" in its row and title, as if it were done."""
    app, executor, _ = make_app(tmp_path / "data")
    executor.progress["run"] = (10, 10)
    async with app.run_test(size=(80, 24)) as pilot:
        job_id = await start_one_job(app, pilot)
        row = app.query_one(WorkflowRow)
        assert str(row.query_one(".wf-state").render()) == "RUNNING"
        # Its tiles are 95 % of its work (core.records.TILES_SHARE), its outputs the rest.
        assert str(row.query_one(".wf-percent").render()) == "95%"
        assert "RUNNING 95%" in str(app.query_one("#lanes-title").render())
        executor.release("run")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await settle(app, pilot)
        assert str(row.query_one(".wf-percent").render()) == "100%"
        assert "SUCCEEDED 100%" in str(app.query_one("#lanes-title").render())


@pytest.mark.anyio
async def test_a_finished_job_with_notes_says_so_on_its_card(tmp_path):
    """A TISSUE_MASK job that found no tissue (its manifest: "no tissue found: the mask is
    empty, so downstream jobs segment nothing; ...") read "SUCCEEDED · ran 0.3 s" on its card,
    like any other: the note was only in its detail screen."""
    app, executor, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        job_id = await start_one_job(app, pilot)
        job_now = app.engine.job("alice", job_id)
        out = results_dir(app.engine.results_root, "alice", job_now.workflow_id, job_now.key)
        out.mkdir(parents=True, exist_ok=True)
        warnings = ["no tissue found: the mask is empty", "too little stained tissue"]
        (out / "manifest.json").write_text(json.dumps({"warnings": warnings}))
        executor.release("run")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await settle(app, pilot)
        card = app.query_one(JobCard)
        assert card_text(card)[0] == "SUCCEEDED ⚠ 2 notes"
        await pilot.press("tab", "enter")  # the detail lists them
        await settle(app, pilot)
        assert "note: no tissue found: the mask is empty" in screen_text(app)
