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
