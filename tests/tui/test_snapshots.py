"""Snapshot tests of the main screens (half-block images only; sixel is never snapshotted)."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from tests.tui.conftest import T0, make_app
from tests.tui.helpers import add_job_via_dialog, card_text, settle, spec, wait_for
from wsitui.core.models import JobState
from wsitui.tui.widgets.lanes import JobCard

SIZE = (120, 36)


def test_first_start(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def three_lanes_mid_run(snapshot_dir: Path):
    app, ex, clock = make_app(snapshot_dir)
    ex.progress = {"a1": (3, 10), "b1": (9, 12), "c1": (1, 8)}
    ex.stages = {"b1": "segmenting"}
    ex.counters = {"b1": {"cells": 1234}}

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
        app.engine.submit(
            "alice",
            spec(
                "cohort-7",
                ("a1", "A"),
                ("a2", "A"),
                ("b1", "B"),
                ("b2", "B", ("a1",)),
                ("c1", "C"),
            ),
        )
        await settle(app, pilot, lambda: app.engine.stats().running == 3)
        await settle(
            app,
            pilot,
            lambda: all(
                j.tiles_total
                for w in app.engine.workflows("alice")
                for j in app.engine.workflow("alice", w.workflow.id).jobs
                if j.state is JobState.RUNNING
            ),
        )
        # The clock alone moves the cards: elapsed 01:30 on every running card at the next
        # tick (no progress event), ETA from its progress.
        clock.now = T0 + 90
        running = [c for c in app.query(JobCard) if c.job.state is JobState.RUNNING]
        await wait_for(pilot, lambda: all(card_text(c)[1].startswith("01:30") for c in running))
        await settle(app, pilot)

    return app, run_before


def test_three_lanes_mid_run(snap_compare, snapshot_dir: Path):
    app, run_before = three_lanes_mid_run(snapshot_dir)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_usable_at_80x24(snap_compare, snapshot_dir: Path):
    app, run_before = three_lanes_mid_run(snapshot_dir)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_too_small_terminal(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)
    assert snap_compare(app, terminal_size=(60, 16))


def test_blocked_pending_held_badges(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir, max_workers=1)

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
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

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_waiting_for_a_tenant_slot(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir, tenant="bob", max_active_users=1)

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
        app.engine.submit("alice", spec("hers", ("a", "A")))
        app.engine.submit("bob", spec("his", ("x", "A"), ("y", "B")))
        await settle(app, pilot, lambda: app.engine.stats().waiting == ("bob",))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_job_detail_with_half_block_preview(snap_compare, snapshot_dir: Path):
    app, ex, clock = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
        w = app.engine.submit("alice", spec("detail", ("mask", "A")))
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_total > 0)
        clock.now = T0 + 42
        ex.release("mask")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await pilot.press("tab", "enter")
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(120, 48), run_before=run_before)


def test_help_screen(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_tenant_switch_dialog(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
        app.engine.submit("bob", spec("his", ("x", "A")), start=False)
        app.engine.submit("carol", spec("hers", ("y", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("u")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_error_shown_for_a_bad_slide(snap_compare, snapshot_dir: Path):
    app, _, _ = make_app(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    bad = snapshot_dir / "notes.svs"
    bad.write_text("not a slide\n")

    async def run_before(pilot: Pilot) -> None:
        await app.ready.wait()
        app.engine.submit("alice", spec("w", ("a", "A")), start=False)
        await settle(app, pilot)
        await add_job_via_dialog(app, pilot, str(bad))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
