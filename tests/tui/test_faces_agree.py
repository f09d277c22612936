"""Every face tells the same numbers for one workflow.

Found by an outside QA round: a tissue mask done (192/192) and a cells job at 23/55 read 70 %
in `wsitui status --json` (and in `wsitui run`'s workflow bar and the `workflow_progress`
event: the engine averaged its jobs by count) but 86 % in the TUI (which weighed them by their
tiles). The rule is now one, in core (`core/tally.py`), and each face reads it."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from rich.console import Console

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready, settle, spec
from wsitui.core.records import TILES_SHARE, JobState, whole_percent
from wsitui.headless.display import ProgressBars
from wsitui.headless.status import status
from wsitui.tui.widgets.workflows import WorkflowRow

pytestmark = pytest.mark.anyio


def _run_bar_percent(bars: ProgressBars, name: str) -> int:
    console = Console(file=io.StringIO(), width=160, height=40, color_system=None)
    console.print(bars.progress.make_tasks_table(bars.progress.tasks))
    (line,) = [ln for ln in console.file.getvalue().splitlines() if f"alice · {name}" in ln]  # type: ignore[attr-defined]
    match = re.search(r"(\d+)%", line)
    assert match, line
    return int(match.group(1))


def _status_json_progress(data_dir, workflow_id: str) -> float:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert status(data_dir, as_json=True) == 0
    (wf,) = [w for w in json.loads(out.getvalue()) if w["id"] == workflow_id]
    return wf["progress"]


async def test_status_json_run_bar_event_and_tui_read_one_percent(tmp_path):
    data = tmp_path / "data"
    app, ex, _ = make_app(data)
    ex.progress = {"mask": (192, 192), "cells": (23, 55)}
    bars = ProgressBars(Console(file=io.StringIO(), width=160, height=40, color_system=None))
    events: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        engine = app.engine
        w = engine.submit("alice", spec("segment", ("mask", "A"), ("cells", "A", ("mask",))))
        wid = w.workflow.id
        engine.bus.add_listener(bars)
        engine.bus.add_listener(
            lambda e: events.append(e.progress) if type(e).__name__ == "WorkflowProgress" else None
        )
        bars.add([engine.workflow("alice", wid)], engine.stats().waiting, engine)
        mask, cells = (j.id for j in w.jobs)
        ex.release("mask")
        await settle(
            app,
            pilot,
            lambda: (
                engine.job("alice", mask).state is JobState.SUCCEEDED
                and engine.job("alice", cells).tiles_done == 23
            ),
        )
        # Weighed by tiles: (192 + 23 x 95 %) / (192 + 55), not (100 % + 40 %) / 2 jobs.
        expected = (192 + TILES_SHARE * 23) / (192 + 55)
        assert whole_percent(expected) == 86
        assert engine.workflow("alice", wid).progress == expected
        assert events[-1] == expected  # the `workflow_progress` event
        (row,) = app.query(WorkflowRow)
        tui = int(str(row.query_one(".wf-percent").render()).strip().rstrip("%"))
        faces = {
            "status --json": whole_percent(_status_json_progress(data, wid)),
            "run bar": _run_bar_percent(bars, "segment"),
            "tui": tui,
        }
        assert faces == dict.fromkeys(faces, 86), faces
        ex.release("cells")
        await app.shutdown()


def _lines(renderable: object, width: int = 200) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_a_job_that_succeeded_with_no_tile_says_0_tiles_in_every_face(tmp_path):
    """A SUCCEEDED job with no tile (a cells job on an empty tissue mask) showed `—`, which
    README defines as "not counted yet": it now says `0 tiles`; one never started keeps `—`."""
    from wsitui.headless.display import summary_table
    from wsitui.headless.status import _workflow_row, status_table
    from wsitui.session.summary import summarize
    from wsitui.tui.screens.detail import progress_text
    from wsitui.tui.widgets.lanes import JobCard

    data = tmp_path / "data"
    app, ex, _ = make_app(data)
    ex.progress = {"empty": (0, 0)}
    bars = ProgressBars(Console(file=io.StringIO(), width=160, height=40, color_system=None))
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        engine = app.engine
        w = engine.submit("alice", spec("nothing", ("empty", "A"), ("held", "B")), start=False)
        engine.bus.add_listener(bars)
        bars.add([engine.workflow("alice", w.workflow.id)], (), engine)
        empty = w.jobs[0].id
        engine.start("alice", [empty])
        ex.release("empty")
        await settle(app, pilot, lambda: engine.job("alice", empty).state is JobState.SUCCEEDED)
        job = engine.job("alice", empty)
        assert (job.tiles_done, job.tiles_total) == (0, 0)
        cards = {c.job.key: c for c in app.query(JobCard)}
        assert str(cards["empty"].query_one(".tiles").render()) == "0 tiles"
        assert str(cards["held"].query_one(".tiles").render()) == "—"
        assert progress_text(job, 0.0).plain.startswith("0 tiles · ran ")
        status = engine.workflow("alice", w.workflow.id)
        summary = summarize(status.workflow, status.jobs, waiting=(), results_root=data)
        bar_text = _lines(bars.progress.make_tasks_table(bars.progress.tasks), 160)
        for face, text in (
            ("run bar", bar_text),
            ("run summary", _lines(summary_table(engine, [status]))),
            ("status", _lines(status_table(data, [summary]))),
        ):
            row = next(line for line in text.splitlines() if "empty" in line)
            assert "0 tiles" in row and "—" not in row, (face, text)
            row = next(line for line in text.splitlines() if "held" in line)
            assert "—" in row and "0 tiles" not in row, (face, text)
        # The folded workflow row: "0 tiles" only once the whole workflow SUCCEEDED.
        assert "—" in _workflow_row(summary)
        done = summary.model_copy(update={"state": "SUCCEEDED", "jobs": summary.jobs[:1]})
        assert "0 tiles" in _workflow_row(done)
        await app.shutdown()


async def test_tiles_skipped_without_work_are_said_beside_the_tiles_in_every_face(tmp_path):
    """SEGMENT_CELLS counts the tiles with tissue (19/19: its work, so its percent, rate and
    ETA are real) and reports the background tiles it skipped as a counter; its manifest counts
    24 tiles, 5 skipped. `19/19` alone read as the whole slide: every face now says the
    skipped ones beside the tiles (`19/19 +5 skipped`; a card's counters `skipped 5`)."""
    from wsitui.headless.display import summary_table
    from wsitui.headless.status import status_table
    from wsitui.session.summary import summarize
    from wsitui.tui.screens.detail import progress_text
    from wsitui.tui.widgets.lanes import JobCard

    data = tmp_path / "data"
    app, ex, _ = make_app(data)
    ex.progress = {"cells": (19, 19)}
    ex.counters = {"cells": {"cells": 7, "skipped": 5}}
    bars = ProgressBars(Console(file=io.StringIO(), width=160, height=40, color_system=None))
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        engine = app.engine
        w = engine.submit("alice", spec("skips", ("cells", "A")), start=False)
        engine.bus.add_listener(bars)
        bars.add([engine.workflow("alice", w.workflow.id)], (), engine)
        job_id = w.jobs[0].id
        engine.start("alice", [job_id])
        ex.release("cells")
        await settle(app, pilot, lambda: engine.job("alice", job_id).state is JobState.SUCCEEDED)
        job = engine.job("alice", job_id)
        card = app.query_one(JobCard)
        assert str(card.query_one(".tiles").render()) == "19/19"
        assert "skipped 5" in str(card.query_one(".times").render())
        detail = progress_text(job, 0.0).plain
        assert detail.startswith("tiles 19/19 +5 skipped · ran ") and "skipped 5" not in detail
        status = engine.workflow("alice", w.workflow.id)
        summary = summarize(status.workflow, status.jobs, waiting=(), results_root=data)
        assert summary.jobs[0].counters["skipped"] == 5  # --json: tiles 19/19, counters
        for face, text in (
            ("run bar", _lines(bars.progress.make_tasks_table(bars.progress.tasks), 160)),
            ("run summary", _lines(summary_table(engine, [status]))),
            ("status", _lines(status_table(data, [summary]))),
        ):
            rows = [line for line in text.splitlines() if "19/19" in line]
            assert len(rows) == 1 and "19/19 +5 skipped" in rows[0], (face, text)
        await app.shutdown()
