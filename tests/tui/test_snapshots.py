"""Snapshot tests of every screen at 80x24 (the smallest supported) and 120x40, with the
longest realistic names (half-block images only; sixel is never snapshotted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from tests.tui.conftest import T0, make_app
from tests.tui.helpers import add_job_via_dialog, app_ready, card_text, settle, spec, wait_for
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.tui.app import WsituiApp
from wsitui.tui.screens.dialogs import Devices
from wsitui.tui.widgets.lanes import JobCard

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
Before = Callable[[Pilot], Awaitable[None]]

# Long but realistic: a TCGA slide name, a cohort with batch and date, descriptive job ids.
WORKFLOW = "TCGA-BRCA-cohort-2024-batch-07-masks-and-nuclei"
SLIDE = "TCGA-A1-A0SB-01Z-00-DX1.8F2A3C9E-1B7D-4C2E-9A6B-3F5E7D1C0B2A.svs"


def long_names_spec() -> WorkflowSpec:
    def job(key: str, branch: str, deps: tuple[str, ...] = ()) -> JobSpec:
        return JobSpec(id=key, type="TISSUE_MASK", slide=f"slides/{SLIDE}", branch=branch,
                       depends_on=deps)  # fmt: skip

    return WorkflowSpec(
        name=WORKFLOW,
        jobs=(
            job("tissue-mask-coarse", "tissue-masks"),
            job("tissue-mask-fine-256", "tissue-masks", ("tissue-mask-coarse",)),
            job("nuclei-instanseg-20x", "nuclei-segmentation"),
            job("nuclei-second-pass", "nuclei-segmentation", ("tissue-mask-coarse",)),
            job("qc-mask-1024", "quality-control"),
        ),
    )


async def still(app: WsituiApp, pilot: Pilot) -> None:
    """No blinking cursor in the picture (a blink caught mid-way made snapshots flaky)."""
    for field in app.screen.query(Input):
        field.cursor_blink = False
    await settle(app, pilot)


def three_lanes_mid_run(snapshot_dir: Path) -> tuple[WsituiApp, Before]:
    """A three-branch workflow mid-run: ETAs from measured rates, stage and counters."""
    app, ex, clock = make_app(snapshot_dir)
    ex.progress = {
        "tissue-mask-coarse": (0, 40),
        "nuclei-instanseg-20x": (0, 165),
        "qc-mask-1024": (0, 12),
    }
    ex.stages = {"nuclei-instanseg-20x": "segmenting"}

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        wf = app.engine.submit("alice", long_names_spec())
        ids = {j.key: j.id for j in wf.jobs}
        await settle(app, pilot, lambda: app.engine.stats().running == 3)
        # Each running job reports twice, 30 s apart: a measured rate, so an ETA.
        for at, step in ((10, 1), (40, 2)):
            clock.now = T0 + at
            ex.report("tissue-mask-coarse", 6 * step)
            ex.report("nuclei-instanseg-20x", 40 * step, {"cells": 1234 * step})
            ex.report("qc-mask-1024", 3 * step)
            await settle(
                app,
                pilot,
                lambda s=step: (
                    app.engine.job("alice", ids["qc-mask-1024"]).tiles_done == 3 * s
                    and app.engine.job("alice", ids["nuclei-instanseg-20x"]).tiles_done == 40 * s
                ),
            )
        clock.now = T0 + 45
        running = [c for c in app.query(JobCard) if c.job.state is JobState.RUNNING]
        await wait_for(pilot, lambda: all(card_text(c)[1].startswith("00:45") for c in running))
        await settle(app, pilot)

    return app, run_before


@pytest.mark.parametrize("size", SIZES)
def test_first_start(snap_compare, snapshot_dir: Path, size):
    app, _, _ = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_three_lanes_mid_run(snap_compare, snapshot_dir: Path, size):
    app, run_before = three_lanes_mid_run(snapshot_dir)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_too_small_terminal(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)
    assert snap_compare(app, terminal_size=(60, 16))


@pytest.mark.parametrize("size", SIZES)
def test_blocked_pending_held_badges(snap_compare, snapshot_dir: Path, size):
    app, _, _ = make_app(snapshot_dir, max_workers=1)

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        w = app.engine.submit(
            "alice",
            spec(
                "badges",
                ("run", "A"),
                ("behind", "A"),
                ("up", "B"),
                ("down", "B", ("up",)),
                ("free", "C"),
            ),
        )
        ids = {j.key: j.id for j in w.jobs}
        app.engine.cancel("alice", ids["up"])  # down becomes BLOCKED
        app.engine.add_job(
            "alice", w.workflow.id, spec("x", ("later", "C")).jobs[0], start=False
        )  # HELD
        await settle(app, pilot, lambda: app.engine.stats().running == 1)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_waiting_for_a_tenant_slot(snap_compare, snapshot_dir: Path, size):
    app, _, _ = make_app(snapshot_dir, tenant="bob", max_active_users=1)

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        app.engine.submit("alice", spec("hers", ("a", "A")))
        app.engine.submit("bob", spec("his", ("x", "A"), ("y", "B")))
        await settle(app, pilot, lambda: app.engine.stats().waiting == ("bob",))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_job_detail_with_half_block_preview(snap_compare, snapshot_dir: Path, size):
    app, ex, clock = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        w = app.engine.submit("alice", long_names_spec())
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_total > 0)
        clock.now = T0 + 42
        ex.release("tissue-mask-coarse")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await pilot.press("tab", "enter")
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def dialog_app(snapshot_dir: Path, *keys: str) -> tuple[WsituiApp, Before]:
    """A workflow with long names on screen, then `keys` pressed (a dialog opened)."""
    app, _, _ = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        app.engine.submit("alice", long_names_spec(), start=False)
        app.engine.submit("bob", spec("his", ("x", "A")), start=False)
        await settle(app, pilot)
        await pilot.press(*keys)
        await still(app, pilot)

    return app, run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(("question_mark",), id="help"),
        pytest.param(("u",), id="tenant"),
        pytest.param(("n", *"cohort-8"), id="new_workflow"),
        pytest.param(("tab", "c"), id="cancel_held"),
        pytest.param(("m",), id="metrics"),
        pytest.param(("s", "N"), id="notifications"),
    ],
)
def test_screens(snap_compare, snapshot_dir: Path, size, keys):
    app, run_before = dialog_app(snapshot_dir, *keys)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_quit_dialog(snap_compare, snapshot_dir: Path, size):
    app, run_before = three_lanes_mid_run(snapshot_dir)

    async def then_quit(pilot: Pilot) -> None:
        await run_before(pilot)
        await pilot.press("q")
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=then_quit)


@pytest.mark.parametrize("size", SIZES)
def test_add_job_dialog_for_a_cells_job(snap_compare, snapshot_dir: Path, size):
    app, _, _ = make_app(snapshot_dir)
    app.devices = Devices(gpus=1, mps=False)  # the machine's devices, fixed for the picture

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        app.engine.submit("alice", long_names_spec(), start=False)
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        app.screen.query_one("#type", Select).value = "SEGMENT_CELLS"
        await still(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_error_shown_for_a_bad_slide(snap_compare, snapshot_dir: Path, size):
    app, _, _ = make_app(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    bad = snapshot_dir / "notes.svs"
    bad.write_text("not a slide\n")

    async def run_before(pilot: Pilot) -> None:
        await app_ready(app)
        app.engine.submit("alice", WorkflowSpec(name="w"), start=False)
        await settle(app, pilot)
        await add_job_via_dialog(app, pilot, str(bad))
        await still(app, pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
