"""Pilot tests of the key flows, driving the real app with keys."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import anyio
import pytest
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from tests.slides.samples import sample_slide_path
from tests.tui.conftest import make_app
from tests.tui.helpers import (
    add_job_via_dialog,
    app_ready,
    card_text,
    screen_text,
    settle,
    spec,
    start_one_job,
    wait_for,
)
from wsitui.core.paths import results_dir
from wsitui.core.records import JobState
from wsitui.tui.screens.detail import JobDetailScreen, PreviewScreen
from wsitui.tui.screens.dialogs import ConfirmDialog, TenantDialog
from wsitui.tui.screens.metrics import MetricsScreen
from wsitui.tui.screens.viewer import ViewerScreen
from wsitui.tui.widgets.lanes import JobCard
from wsitui.tui.widgets.workflows import WorkflowRow

pytestmark = pytest.mark.anyio
SIZE = (120, 36)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (2048, 1536), 3)


def only_job(app):
    (w,) = app.engine.workflows(app.tenant)
    (job,) = app.engine.workflow(app.tenant, w.workflow.id).jobs
    return job


async def test_create_start_cancel_retry(tmp_path, slide):
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("n", *"mywf", "enter")
        await settle(app, pilot)
        assert [r.workflow_id for r in app.query(WorkflowRow)] == ["wf0001"]

        await add_job_via_dialog(app, pilot, str(slide))
        job = only_job(app)
        assert job.state is JobState.PENDING and not job.enqueued  # held until started

        await pilot.press("tab")  # from the workflow list to the first job card
        assert isinstance(app.focused, JobCard)
        await pilot.press("s")
        await settle(app, pilot, lambda: only_job(app).state is JobState.RUNNING)
        card = app.query_one(JobCard)
        assert "RUNNING" in str(card.query_one(".badge").render())

        await pilot.press("c")  # running: it asks first (partial outputs are discarded)
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(app, pilot, lambda: only_job(app).state is JobState.CANCELED)
        assert "CANCELED" in str(card.query_one(".badge").render())
        await pilot.press("s")  # the key that does it, not the engine's refusal
        await settle(app, pilot)
        assert list(app._notifications)[-1].message == f"{job.key} was canceled: r retries it"

        await pilot.press("r")
        await settle(app, pilot, lambda: only_job(app).state is JobState.RUNNING)
        assert only_job(app).attempt == 2
        ex.release(only_job(app).key)
        await settle(app, pilot, lambda: only_job(app).state is JobState.SUCCEEDED)
        assert "SUCCEEDED" in str(app.query_one(JobCard).query_one(".badge").render())
        for key in ("s", "r"):  # `s` said "retry it instead", and `r` then refused
            await pilot.press(key)
            await settle(app, pilot)
            said = list(app._notifications)[-1].message
            assert said == f"{job.key} succeeded: R runs it again (asks first)", key
        assert only_job(app).attempt == 2 and only_job(app).state is JobState.SUCCEEDED
        await app.shutdown()


async def test_tenants_see_and_touch_only_their_own_workflows(tmp_path):
    app, ex, _ = make_app(tmp_path / "data", tenant="bob")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        alice = app.engine.submit("alice", spec("secret", ("a", "A")))
        app.engine.submit("bob", spec("mine", ("b", "A")), start=False)
        await settle(app, pilot)
        rows = list(app.query(WorkflowRow))
        assert [r.workflow_id for r in rows] == ["wf0002"]  # bob's only
        assert [(c.job.tenant, c.job.key) for c in app.query(JobCard)] == [("bob", "b")]

        # Even with alice's job id in hand, bob's commands cannot reach it.
        app._board.selected = alice.jobs[0].id
        await pilot.press("c")
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.engine.job("alice", alice.jobs[0].id).state is JobState.RUNNING
        messages = [n.message for n in app._notifications]
        assert any("no job" in m and "'bob'" in m for m in messages)

        # Switching tenant with the picker shows alice's workflows instead.
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, TenantDialog)
        await pilot.press("up", "enter")  # alice sorts before bob
        await settle(app, pilot)
        assert app.tenant == "alice"
        assert [r.workflow_id for r in app.query(WorkflowRow)] == ["wf0001"]
        ex.release("a")
        await app.shutdown()


async def test_quit_with_running_jobs_asks_then_resumes_next_start(tmp_path):
    data = tmp_path / "data"
    app, _, _ = make_app(data)
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "long", "a")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # changed my mind
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        with anyio.fail_after(10):
            while app.is_running:
                await anyio.sleep(0.05)
    db = sqlite3.connect(data / "state.db")
    state, reason = db.execute(
        "SELECT j.state, t.reason FROM jobs j JOIN transitions t ON t.job_id = j.id "
        "WHERE j.id = ? ORDER BY t.id DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    db.close()
    assert state == "PENDING" and reason.startswith("interrupted")

    app2, ex2, _ = make_app(data)
    async with app2.run_test(size=SIZE) as pilot:
        await settle(
            app2, pilot, lambda: app2.engine.job("alice", job_id).state is JobState.RUNNING
        )
        ex2.release("a")
        await settle(app2, pilot, lambda: app2.engine.job("alice", job_id).state.terminal)
        assert app2.engine.job("alice", job_id).state is JobState.SUCCEEDED
        await app2.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
async def test_hangup_or_term_stops_like_a_quit_and_the_job_resumes_not_a_crash(tmp_path, sig):
    """The SSH connection dropping (SIGHUP) or `kill` (SIGTERM) used to end the process with
    its job RUNNING on disk: a crash to recovery, and the job failed after two of them."""
    data = tmp_path / "data"
    app, _, _ = make_app(data, catch_signals=True)
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "long", "a")
        os.kill(os.getpid(), sig)
        with anyio.fail_after(10):
            while app.is_running:
                await anyio.sleep(0.05)
    assert app.signaled == sig and app.stopping == 1
    db = sqlite3.connect(data / "state.db")
    state, crashes, reason = db.execute(
        "SELECT j.state, j.crashes, t.reason FROM jobs j JOIN transitions t ON t.job_id = j.id "
        "WHERE j.id = ? ORDER BY t.id DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    db.close()
    assert (state, crashes) == ("PENDING", 0) and reason.startswith("interrupted"), reason


async def test_metrics_screen_shows_latency_after_a_job(tmp_path):
    app, ex, clock = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("m", ("a", "A"), ("b", "A")))
        await settle(app, pilot, lambda: app.engine.stats().running == 1)
        clock.now += 30
        ex.release("a")
        await settle(app, pilot, lambda: app.engine.job("alice", w.jobs[0].id).state.terminal)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen)
        assert app.metrics.latency_per_minute(clock.now, 30)[-1] == pytest.approx(30.0)
        text = str(app.screen.query_one("#latency-text").render())
        assert "now 30.0 s" in text
        # Both charts a cell a minute, so their minutes line up (latency was screen-wide).
        workers = str(app.screen.query_one("#workers").render())
        assert app.screen.query_one("#latency").size.width == len(workers) == 30
        ex.release("b")
        await app.shutdown()


async def test_metrics_screen_shows_queue_depth_per_branch(tmp_path):
    app, ex, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        # One worker: a runs; b waits behind it in lane A, c and d wait in lane B.
        app.engine.submit("alice", spec("deep", ("a", "A"), ("b", "A"), ("c", "B"), ("d", "B")))
        await settle(app, pilot, lambda: app.engine.stats().running == 1)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen)
        lines = str(app.screen.query_one("#depths").render()).splitlines()
        assert [line.split()[0] for line in lines] == ["deep/A", "deep/B"]
        assert [line.split()[-1] for line in lines] == ["1", "2"]
        await pilot.press("n", "c")  # main-screen keys do nothing here (no dialog, no cancel)
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen)
        assert app.engine.stats().running == 1
        ex.release("a")
        ex.release("b")
        ex.release("c")
        ex.release("d")
        await app.shutdown()


async def test_running_card_clock_ticks_with_no_progress_and_shows_stage(tmp_path):
    app, ex, clock = make_app(tmp_path / "data")
    ex.stages["load"] = "loading model"
    ex.progress["load"] = (0, 0)  # nothing known about tiles yet
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("slow", ("load", "A")))
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).stage == "loading model")
        card = app.query_one(JobCard)
        assert card_text(card) == ("RUNNING loading model", "00:00 · ETA --:--")

        # No event from the job: only the clock moves, and the card follows it.
        clock.now += 5
        await wait_for(pilot, lambda: card_text(card)[1].startswith("00:05"))
        clock.now += 60
        await wait_for(pilot, lambda: card_text(card)[1].startswith("01:05"))

        # A stage change alone (no tiles) reaches the card too.
        ex.later_stages["load"] = "writing outputs"
        await wait_for(pilot, lambda: card_text(card)[0] == "RUNNING writing outputs")
        ex.release("load")
        await app.shutdown()


def tail_text(detail: JobDetailScreen) -> str:
    """What the detail screen's error, result, outputs and preview sections say."""
    parts = []
    for widget in detail.query("#tail > *"):
        content = getattr(widget, "content", None)
        parts.append(str(content) if content is not None else type(widget).__name__)
    return "\n".join(parts)


async def test_card_shows_counters_and_detail_shows_stage(tmp_path):
    app, ex, _ = make_app(tmp_path / "data")
    ex.stages["seg"] = "segmenting"
    ex.progress["seg"] = (3, 10)
    ex.counters["seg"] = {"cells": 1234}
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("cells", ("seg", "A")))
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).counters != {})
        card = app.query_one(JobCard)
        # One report is no rate yet: no ETA rather than a made-up one.
        assert card_text(card)[1] == "00:00 · ETA --:-- · cells 1.2k"

        await pilot.press("tab", "enter")
        await pilot.pause()
        assert isinstance(app.screen, JobDetailScreen)
        progress = str(app.screen.query_one("#progress").render())
        assert "tiles 3/10" in progress and "stage: segmenting" in progress
        assert "cells 1.2k" in progress
        ex.later_stages["seg"] = "writing outputs"  # the open detail screen follows the job
        await wait_for(
            pilot,
            lambda: "stage: writing outputs" in str(app.screen.query_one("#progress").render()),
        )
        detail = app.screen
        assert [str(t.state) for t in detail.transitions] == ["PENDING", "RUNNING"]
        ex.release("seg")  # it ends while the screen is open: header and timeline follow
        await wait_for(pilot, lambda: len(detail.transitions) == 3)
        assert str(detail.transitions[2].state) == "SUCCEEDED"
        assert "SUCCEEDED" in screen_text(app)
        assert "SUCCEEDED" in str(detail.query_one("#state").render())
        # A finished job has no ETA (it read "ETA --:--"): it says how long it ran.
        progress = str(detail.query_one("#progress").render())
        assert "ETA" not in progress and " · ran " in progress, progress
        # ...and so do its outputs and preview, written as it ended (they stayed "(none yet)"
        # and "no preview yet" until the screen was opened again)
        await wait_for(pilot, lambda: "preview.png" in tail_text(detail))
        assert "(none yet)" not in tail_text(detail) and "no preview yet" not in tail_text(detail)
        await pilot.press("p")  # the detail screen's own key for the full-screen preview
        await pilot.pause()
        assert isinstance(app.screen, PreviewScreen)
        await app.shutdown()


async def test_a_running_jobs_progress_line_is_whole_at_80_columns(tmp_path):
    # tiles, elapsed, ETA and rate filled the one line: the stage and the counters after them
    # were cut at the screen's edge ("... · stage:" and nothing).
    app, ex, clock = make_app(tmp_path / "data")
    ex.stages["seg"] = "segmenting"
    ex.progress["seg"] = (3, 1000)
    ex.counters["seg"] = {"cells": 1234}
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("cells", ("seg", "A")))
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).counters != {})
        for done in (13, 23):  # steps after the first: a measured rate and an ETA
            clock.now += 10
            ex.report("seg", done, {"cells": 12345})
            await settle(app, pilot, lambda d=done: app.engine.job("alice", job_id).tiles_done == d)
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, JobDetailScreen)
        await wait_for(pilot, lambda: "tiles/s" in str(app.screen.query_one("#progress").render()))
        shown = " ".join(screen_text(app).split())
        for part in ("tiles 23/1000", "ETA ", "tiles/s", "stage: segmenting", "cells 12.3k"):
            assert part in shown, (part, screen_text(app))
        ex.release("seg")
        await app.shutdown()


async def test_a_long_failure_reason_wraps_in_the_timeline_at_80_columns(tmp_path):
    # The timeline was a table as wide as its longest reason: at 80 columns a failure's
    # reason was cut at the screen's edge, with no way to read the rest.
    app, ex, _ = make_app(tmp_path / "data")
    key = "nuclei-second-pass-with-a-long-descriptive-name-for-the-lab"
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("w", (key, "A")))
        job_id = w.jobs[0].id
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.name == "RUNNING")
        ex.release(key, "fail")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, JobDetailScreen)
        shown = screen_text(app)
        assert all(len(line) <= 80 for line in shown.splitlines())
        reason = f"failed: synthetic failure in {key}"
        assert len(reason) > 60  # more than the reason column's share of 80 columns
        # Its continuation lines follow it (the other columns are blank there).
        assert "".join(reason.split()) in "".join(shown.split()), shown
        await app.shutdown()


async def test_quitting_with_a_running_jobs_detail_open_is_no_traceback(tmp_path):
    # Quitting stops the running job; its state change arrives after the engine closed, and
    # the open detail screen read its timeline from the closed store: a traceback on exit.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "w", "run")
        workflow_id = app.engine.job("alice", job_id).workflow_id
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await app.shutdown()  # the job stops: RUNNING -> PENDING, published as it closes
        assert not app.engine.is_open
        app._inbox.add(workflow_id)  # its news, drawn after the close
        await app.flush()
        detail.show(app.engine.job("alice", job_id), detail.badge)  # a late redraw of it
        await pilot.pause()
        assert [str(t.state) for t in detail.transitions] == ["PENDING", "RUNNING"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_footer_shows_help_and_quit(tmp_path, size):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=size) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("w", ("a", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("tab")  # a job card has focus: the most keys in the footer
        await pilot.pause()
        assert isinstance(app.focused, JobCard)
        keys = {k.description: k for k in app.screen.query(FooterKey)}
        assert "Details" in keys
        for name in ("Help", "Quit"):
            region = keys[name].region
            assert region.width > 0 and region.right <= size[0], f"{name} cut off at {size}"
            # Not hidden under anything docked over the footer either (the palette key is):
            # every cell of the key shows the key.
            for x in range(region.x, region.right):
                widget, _ = app.screen.get_widget_at(x, region.y)
                assert widget is keys[name], f"{name} covered at {size}"
        await app.shutdown()


async def test_demo_key_generates_a_slide_and_a_held_workflow(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("d")
        for worker in [w for w in app.workers if w.group == "demo"]:
            await worker.wait()
        await settle(app, pilot)
        assert (app.sample_dir / "demo.svs").is_file()
        (w,) = app.engine.workflows("alice")
        jobs = app.engine.workflow("alice", w.workflow.id).jobs
        assert w.workflow.name == "tui-demo-1" and len(jobs) == 3
        assert not any(j.enqueued for j in jobs)  # held until S
        assert len(app.query(JobCard)) == 3
        await app.shutdown()


async def test_a_workflow_name_longer_than_allowed_is_said_in_the_dialog(tmp_path):
    # 250 characters were accepted by the dialog, then refused after Create with pydantic's
    # "1 validation error for WorkflowSpec ..." in a toast, and what was typed was gone.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("n")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#name", Input).value = "x" * 250  # pasted
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog  # still open, the name kept to shorten
        error = str(dialog.query_one("#error").render())
        assert error == "the name has 250 characters; shorten it to at most 200"
        assert not app.query(WorkflowRow) and not app.notes
        await pilot.press("backspace", "enter")  # still 249
        await pilot.pause()
        dialog.query_one("#name", Input).value = "x" * 200
        await pilot.press("enter")
        await settle(app, pilot)
        (row,) = app.query(WorkflowRow)
        assert row.status.workflow.name == "x" * 200
        await app.shutdown()


async def test_names_and_errors_with_brackets_are_shown_as_typed(tmp_path):
    # Text from users, slides and libraries is never read as markup: "[/]" used to crash the
    # app (MarkupError) and "[red]" vanished.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("n", *"cohort [/] [red]7", "enter")
        await settle(app, pilot)
        (row,) = app.query(WorkflowRow)
        assert str(row.query_one(".wf-name").render()).startswith("cohort [/] [red]7 ")
        await add_job_via_dialog(app, pilot, str(tmp_path / "scan [/b].svs"))
        error = str(app.screen.query_one("#error").render())  # the dialog stays open
        assert "scan [/b].svs" in error, error
        assert "Add a job to cohort [/] [red]7" in str(app.screen.query_one(".title").render())
        await pilot.press("escape")
        await app.shutdown()


async def test_the_detail_state_line_wraps_a_long_error_at_80_columns(tmp_path):
    # Over SSH at 80x24 the state line (badge, error, attempt) was one row: a long error and
    # the attempt after it were cut off.
    app, ex, _ = make_app(tmp_path / "data")
    key = "k" * 60
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        job_id = app.engine.submit("alice", spec("w", (key, "A"))).jobs[0].id
        ex.release(key, "fail")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, JobDetailScreen)
        state = app.screen.query_one("#state")
        shown = str(state.render())
        assert f"synthetic failure in {key}" in shown and "attempt 1" in shown
        width = state.content_region.width
        assert state.content_region.height >= -(-len(shown) // width) >= 2
        await app.shutdown()


async def test_the_viewer_footer_fits_80_columns_inside_the_app(tmp_path, slide):
    # Inside wsitui the app's `? Help` and `q Quit` join the viewer's keys: at 80 columns the
    # footer was cut after "n Next cel" and showed neither (`wsitui view` alone fitted).
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.push_screen(ViewerScreen(slide, protocol="halfcell"))
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        for key in ("esc Back", "+ In", "- Out", "t Tissue", "c Cells", "n Next", "? Help"):
            assert key in footer, footer
        assert footer.rstrip().endswith("q Quit"), footer
        await app.shutdown()


async def test_a_held_jobs_card_and_detail_show_no_tiles_until_it_counts_them(tmp_path):
    """A job that never started showed "0/0" on its card and "tiles 0/0" in its detail, as
    if it had finished empty work: it shows "—" until the total is known."""
    from wsitui.tui.screens.detail import progress_text

    app, _, _ = make_app(tmp_path / "data", tenant="bob")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("bob", spec("mine", ("b", "A")), start=False)
        await settle(app, pilot)
        card = app.query_one(JobCard)
        assert str(card.query_one(".tiles").render()) == "—"
        assert "0/0" not in screen_text(app)
        assert progress_text(card.job, 0.0).plain.startswith("tiles — · not started")
        await app.shutdown()


async def test_the_cancel_question_says_what_happens_to_the_finished_tiles(tmp_path):
    """It said "its partial outputs are discarded (r retries it from the start)": a job that
    stops at its next tile keeps its shards, and a retry continues from them (a cells job
    canceled at 12/55 came back at 12/55 with its cells). Only a run that ignores the stop
    past `cancel_grace` has its outputs removed."""
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        job_id = await start_one_job(app, pilot)
        job = app.engine.job("alice", job_id)
        out = results_dir(app.engine.results_root, "alice", job.workflow_id, job.key)
        shard = out / "shards" / "t0_0.bin"  # a finished tile, as the real executors keep it
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.write_bytes(b"tile")
        await pilot.press("tab", "c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        question = app.screen.question
        assert "tiles it finished are kept and r retries it from them" in question, question
        assert "discarded" not in question and "from the start" not in question, question
        assert "5 s later" in question, question  # the engine's cancel_grace
        await pilot.press("y")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        assert app.engine.job("alice", job_id).state is JobState.CANCELED
        assert shard.read_bytes() == b"tile"  # kept, as the question said
        await pilot.press("r")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).attempt == 2)
        assert shard.read_bytes() == b"tile"  # the retry starts with it
        await app.shutdown()


async def test_a_failed_job_does_not_say_its_outputs_and_preview_are_coming(tmp_path):
    """A failed job's detail read "(none yet)" and "no preview yet", like a running one's:
    nothing is coming unless it is retried, and the screen says so."""
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        job_id = await start_one_job(app, pilot)
        await pilot.press("tab", "enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        assert "(none yet)" in tail_text(detail) and "no preview yet" in tail_text(detail)
        ex.release("run", "fail")  # it fails while the screen is open
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await wait_for(pilot, lambda: "yet" not in tail_text(detail))
        tail = tail_text(detail)
        assert "(none: it failed; r retries it)" in tail, tail
        assert "no preview: it failed; r retries it" in tail, tail
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PreviewScreen)
        assert "this job has no preview: it failed; r retries it" in screen_text(app)
        await app.shutdown()
