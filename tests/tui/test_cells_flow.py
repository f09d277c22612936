"""SEGMENT_CELLS in the TUI: the add-job dialog offers the model and device."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from textual.widgets import Input, Select

from tests.slides.samples import sample_slide_path
from tests.tui.fakes import ScriptedExecutor
from tests.tui.helpers import settle
from wsitui.core.engine import Engine
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.tui.app import WsituiApp
from wsitui.tui.screens.dialogs import AddJobDialog

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (2048, 1536), 3)


async def test_add_a_cells_job_with_its_model_and_device(tmp_path, slide):
    engine = Engine(tmp_path / "d", [ScriptedExecutor(), SegmentCellsExecutor()])
    app = WsituiApp(engine, tenant="alice", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", *"w", "enter")
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, AddJobDialog)
        assert not dialog.query_one("#model-opts").display  # only for SEGMENT_CELLS
        dialog.query_one("#slide", Input).value = str(slide)
        dialog.query_one("#type", Select).value = "SEGMENT_CELLS"
        await pilot.pause()
        assert dialog.query_one("#model-opts").display
        dialog.query_one("#model", Input).value = "classical"
        dialog.query_one("#device", Select).value = "cpu"
        await pilot.press("enter")
        await pilot.pause()
        for worker in [w for w in app.workers if w.group == "add-job"]:
            await worker.wait()
        await settle(app, pilot)
        (w,) = engine.workflows("alice")
        (job,) = engine.workflow("alice", w.workflow.id).jobs
        assert job.job_type == "SEGMENT_CELLS"
        assert job.params == {"model": "classical", "device": "cpu"}
        await app.shutdown()


async def test_a_default_cells_job_on_the_classical_model_has_no_note(tmp_path, slide, monkeypatch):
    """With no pretrained model cached, a job with no `model` runs the classical model, the
    documented default: its card read `SUCCEEDED ⚠ 1 note` ("the classical fallback, not
    InstanSeg"), on every default job. The detail screen names the model, without a note."""
    from tests.tui.helpers import card_text, screen_text
    from wsitui.core.records import JobSpec, WorkflowSpec
    from wsitui.tui.widgets.lanes import JobCard

    monkeypatch.setenv("WSITUI_MODEL_DIR", str(tmp_path / "no-models"))
    engine = Engine(tmp_path / "d", [SegmentCellsExecutor()])
    app = WsituiApp(engine, tenant="alice", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        job = JobSpec(id="cells", type="SEGMENT_CELLS", slide=str(slide), params={"tile_size": 512})
        w = engine.submit("alice", WorkflowSpec(name="w", jobs=(job,)))
        job_id = w.jobs[0].id
        await settle(app, pilot)
        with anyio.fail_after(120):
            await engine.wait_until(lambda: engine.job("alice", job_id).state.terminal)
        await settle(app, pilot)
        assert engine.job("alice", job_id).state.name == "SUCCEEDED"
        assert card_text(app.query_one(JobCard))[0] == "SUCCEEDED"
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        shown = screen_text(app)
        assert "model classical (classical)" in shown, shown
        assert "note:" not in shown and "⚠" not in shown, shown
        await app.shutdown()


def test_the_detail_screen_states_what_a_cells_job_found():
    from wsitui.tui.screens.detail import result_lines

    lines = result_lines(
        {
            "cells": 12345,
            "density_per_mm2": 2100.4,
            "tissue_area_mm2": 5.88,
            "tissue_source": "upstream:mask",
            "model": {
                "name": "wsitui_he_nuclei",
                "kind": "shipped",
                "device": "cpu",
                "precision": "fp32",
                "pixel_size": 0.5,
            },
            "tiles": {"processed": 30, "skipped": 18, "tile_size": 1024, "overlap": 48},
            "timings": {
                "read": 1.0,
                "infer": 60.25,
                "post": 3.0,
                "merge": 0.1,
                "write": 2.0,
                "total": 66.0,
            },
            "warnings": ["slide has no pixel size; assumed 0.5 µm/px"],
        },
        "SEGMENT_CELLS",
    )
    assert lines[0] == "cells 12,345 · 2,100 per mm² of tissue (5.88 mm², upstream:mask)"
    assert lines[1] == "model wsitui_he_nuclei (shipped) on cpu, fp32, 0.5 µm/px"
    assert "30 segmented, 18 without tissue" in lines[2]
    assert "infer 60.2 s" in lines[3] and "total 66.0 s" in lines[3]
    assert lines[4].startswith("note: slide has no pixel size")


def test_the_detail_screen_states_what_a_measure_job_did_without_a_false_density():
    from wsitui.tui.screens.detail import result_lines

    lines = result_lines(
        {
            "cells": 5054,
            "measurements": ["Nucleus: Area µm^2", "Hematoxylin: Nucleus: Mean"],
            "stains": {"source": "macenko", "hematoxylin": [0.65, 0.7, 0.29]},
            "tiles": {"total": 12, "tile_size": 1024},
        },
        "MEASURE_CELLS",
    )
    assert lines[0] == "cells measured 5,054 · 2 measurements each · stain vectors: macenko"
    assert not any("per mm²" in line for line in lines)


def test_the_metrics_screen_lists_dask_workers_and_their_rates():
    from wsitui.jobs.segment_cells.dask_info import ClusterStatus, WorkerRate
    from wsitui.tui.screens.metrics import dask_text

    assert str(dask_text([])) == "no Dask cluster in use"
    cluster = ClusterStatus(
        "tcp://10.0.0.5:8786",
        False,
        "http://10.0.0.5:8787/status",
        (WorkerRate("tcp://10.0.0.7:40001", 2, 1, 120, 3.5),),
        3.5,
    )
    lines = str(dask_text([cluster])).splitlines()
    assert lines[0] == "tcp://10.0.0.5:8786 · 3.5 tiles/s · http://10.0.0.5:8787/status"
    assert lines[1].split() == ["tcp://10.0.0.7:40001", "2", "thr", "GPU", "120", "tiles", "3.50/s"]


async def test_the_metrics_screen_shows_the_numbers_the_endpoint_serves(tmp_path):
    from wsitui.core.metrics import Metrics
    from wsitui.tui.screens.metrics import now_text

    # The totals shown are those the executors declare: SEGMENT_CELLS's cells found.
    engine = Engine(tmp_path / "d", [ScriptedExecutor(), SegmentCellsExecutor()], max_workers=3)
    async with engine:
        metrics = Metrics()
        text = str(now_text(metrics.snapshot(engine)))
    assert text.startswith("running 0 · workers busy 0 free 3 · queued 0 (pending 0)")
    assert "cells 0" in text and "submissions refused 0" in text


async def test_the_metrics_screen_shows_the_clusters_the_executors_report(tmp_path):
    """Through the contract (`Executor.clusters()`), whichever executor runs on a cluster."""
    from dataclasses import dataclass

    from wsitui.tui.screens.metrics import MetricsScreen

    @dataclass(frozen=True)
    class Cluster:  # what a cluster backend reports: the contract's ClusterStatus, typed
        address: str = "tcp://10.0.0.9:8786"
        local: bool = False
        dashboard: str = "http://10.0.0.9:8787/status"
        workers: tuple = ()
        tiles_per_s: float = 2.0

    class OnACluster(ScriptedExecutor):
        def clusters(self) -> list[Cluster]:
            return [Cluster()]

    engine = Engine(tmp_path / "d", [OnACluster()])
    app = WsituiApp(engine, tenant="alice", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen)
        shown = str(app.screen.query_one("#dask").render())
        assert shown.startswith("tcp://10.0.0.9:8786 · 2.0 tiles/s · http://10.0.0.9:8787/status")
