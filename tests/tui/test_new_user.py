"""Pilot tests of the TUI as a new user meets it (issues 21 and 22): keys act on the visible
highlighted card, dialogs keep what was typed, numbers say what is true, conventions work."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import anyio
import pytest
from rich.console import Console
from textual.content import Content
from textual.widgets import Input, Select

from tests.slides.samples import sample_slide_path
from tests.tui.conftest import T0, make_app
from tests.tui.helpers import app_ready, screen_text, settle, spec, start_one_job, wait_for
from wsitui.core.records import JobState, WorkflowSpec
from wsitui.session.session import SessionOptions, prepare_session
from wsitui.tui.main import build_app
from wsitui.tui.rates import WINDOW_S
from wsitui.tui.screens.dialogs import AddJobDialog, ConfirmDialog, Devices, TenantDialog
from wsitui.tui.screens.help import HelpScreen
from wsitui.tui.screens.notes import NotesScreen
from wsitui.tui.widgets.lanes import JobCard
from wsitui.tui.widgets.workflows import WorkflowRow

pytestmark = pytest.mark.anyio
SIZE = (120, 40)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (2048, 1536), 3)


def selected(app) -> JobCard:
    (card,) = [c for c in app.query(JobCard) if c.has_class("-selected")]
    return card


# ---- 21.2 / 22.6: keys act only on the visible, highlighted card -----------------------------
async def test_first_card_is_selected_and_keys_act_on_the_shown_workflow_only(tmp_path):
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        first = app.engine.submit("alice", spec("first", ("cells", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("n", *"second", "enter")  # a new workflow: it is shown
        await settle(app, pilot)
        job = spec("x", ("cells2", "A")).jobs[0]
        second = app.engine.add_job("alice", app.selected_workflow, job, start=False)
        await settle(app, pilot)
        # The newest workflow is shown; its only card is highlighted at once, no tab needed.
        assert [c.job.key for c in app.query(JobCard)] == ["cells2"]
        assert selected(app).job.key == "cells2"
        await pilot.press("s")
        await settle(app, pilot)
        assert app.engine.job("alice", second.id).enqueued
        assert not app.engine.job("alice", first.jobs[0].id).enqueued  # not on screen

        # Another workflow shown: the selection follows to its first card, never stale.
        await pilot.press("up")  # the workflow list has focus: move to "first"
        await settle(app, pilot)
        assert selected(app).job.key == "cells"
        assert app.selected_job == first.jobs[0].id
        ex.release("cells2")
        await app.shutdown()


async def test_selection_is_a_visible_highlight_that_moves_with_jkhl(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("w", ("a1", "A"), ("a2", "A"), ("b1", "B")), start=False)
        await settle(app, pilot)
        card = selected(app)
        assert card.job.key == "a1"
        assert card.styles.border_top[0] == "heavy"  # not a faint background change
        others = [c for c in app.query(JobCard) if c is not card]
        assert all(c.styles.border_top[0] != "heavy" for c in others)
        await pilot.press("tab")  # to the cards
        await pilot.press("j")
        assert selected(app).job.key == "a2"
        await pilot.press("l")
        assert selected(app).job.key == "b1"
        await pilot.press("h", "k")
        assert selected(app).job.key == "a1"
        await app.shutdown()


async def test_after_adding_a_job_the_new_card_is_the_selection(tmp_path, slide):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("w", ("cells-big", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#slide", Input).value = str(slide)
        app.screen.query_one("#key", Input).value = "cells-big2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, AddJobDialog))
        await settle(app, pilot)
        assert selected(app).job.key == "cells-big2"
        await pilot.press("c")  # held, so canceled at once: the one meant
        await settle(app, pilot)
        states = {j.key: j.state for j in app.engine.workflow("alice", "wf0001").jobs}
        assert states == {"cells-big": JobState.PENDING, "cells-big2": JobState.CANCELED}
        await app.shutdown()


async def test_cancel_of_a_running_job_asks_first(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "w", "run")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert "tiles it finished are kept" in str(app.screen.query_one(".title").render())
        await pilot.press("n")
        await settle(app, pilot)
        assert app.engine.job("alice", job_id).state is JobState.RUNNING
        await pilot.press("c", "y")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        assert app.engine.job("alice", job_id).state is JobState.CANCELED
        await app.shutdown()


async def test_cancel_question_follows_the_job_and_never_acts_on_a_stale_view(tmp_path):
    # The question stayed as asked while the job failed and was retried behind it; a `y` then
    # canceled attempt 2, which the user never saw.
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "w", "run")
        await pilot.press("c")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        ex.release("run", "fail")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        app.engine.retry("alice", job_id)  # anything retrying it meanwhile (a script, a hook)
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).attempt == 2)
        await wait_for(
            pilot, lambda: "nothing to cancel" in str(dialog.query_one(".title").render())
        )
        title = str(dialog.query_one(".title").render())
        assert "run is" in title and "(attempt 2) now" in title, title
        assert not dialog.query("#yes")  # nothing left to say yes to
        await pilot.press("y")
        await settle(app, pilot)
        assert app.screen is not dialog
        job = app.engine.job("alice", job_id)
        assert job.attempt == 2 and not job.state.terminal  # attempt 2 was not canceled
        ex.release("run")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        assert app.engine.job("alice", job_id).state is JobState.SUCCEEDED
        await app.shutdown()


async def test_a_yes_racing_the_redraw_is_not_acted_on_either(tmp_path):
    # The job ends between the dialog's last update and the key: the answer is checked
    # against the job as it is now, and only says so.
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        job_id = await start_one_job(app, pilot, "w", "run")
        await pilot.press("c")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        ex.release("run")
        with anyio.fail_after(10):
            await app.engine.wait_until(lambda: app.engine.job("alice", job_id).state.terminal)
        dialog.dismiss(True)  # the yes, before any redraw
        await settle(app, pilot)
        assert app.engine.job("alice", job_id).state is JobState.SUCCEEDED
        assert any("nothing to cancel" in n.message for n in app.notes), app.notes
        assert not any(n.severity == "error" for n in app.notes), app.notes
        await app.shutdown()


# ---- 21.1 / 22.7: the demo's name never clashes ---------------------------------------------
async def test_each_demo_gets_its_own_name_never_a_config_one(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    app.reserved_names = {"tui-demo-1"}  # as if the config had a workflow of that name
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for _ in range(2):
            await pilot.press("d")
            for worker in [w for w in app.workers if w.group == "demo"]:
                await worker.wait()
            await settle(app, pilot)
        names = [w.workflow.name for w in app.engine.workflows("alice")]
        assert names == ["tui-demo-2", "tui-demo-3"]
        await app.shutdown()


async def test_readme_main_command_twice_around_a_demo(tmp_path):
    """`wsitui --config sample_config.toml`, `d` as bob, quit, then the same command again:
    the config's workflows still start (the demo used to take bob's "demo", exit 2)."""
    config = tmp_path / "sample_config.toml"
    shutil.copy(REPO / "sample_config.toml", config)
    opts = SessionOptions(config=config, data_dir=tmp_path / "data")

    session = prepare_session(opts)
    app = build_app(session, "bob")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("d")
            for worker in [w for w in app.workers if w.group == "demo"]:
                await worker.wait()
            await settle(app, pilot)
            await app.shutdown()
    finally:
        session.close()

    session = prepare_session(opts)
    app = build_app(session, "bob")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.return_code is None and app.is_running  # not "rename the workflow"
            names = sorted(w.workflow.name for w in app.engine.workflows("bob"))
            assert names == ["demo", "tui-demo-1"]
            await app.shutdown()
    finally:
        session.close()


# ---- 21.3 / 22.1 / 22.5: the add-job dialog ---------------------------------------------------
async def test_add_job_dialog_offers_devices_with_what_is_present_marked(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    app.devices = Devices(gpus=2, mps=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        app.engine.submit("alice", WorkflowSpec(name="w"), start=False)
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, AddJobDialog)
        dialog.query_one("#type", Select).value = "SEGMENT_CELLS"
        await pilot.pause()
        device = dialog.query_one("#device", Select)
        labels = [str(label) for label, _ in device._options]
        assert labels == [
            "auto (→ cuda)", "cpu ✓", "cuda ✓", "cuda:0 ✓", "cuda:1 ✓", "mps (none here)"
        ]  # fmt: skip
        # Drawn: inside the screen, with a real size (it used to be invisible).
        region = device.region
        assert region.width >= 10 and region.height == 1 and region.bottom <= 24
        await app.shutdown()


async def test_a_bad_slide_keeps_the_dialog_open_and_the_error_clears_once_fixed(tmp_path, slide):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("alice", WorkflowSpec(name="w"), start=False)
        await settle(app, pilot)
        await pilot.press("a")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, AddJobDialog)
        # A new workflow has no branches yet: no "existing: main" that does not exist.
        hints = " ".join(str(lb.render()) for lb in dialog.query(".hint"))
        assert "existing" not in hints
        dialog.query_one("#key", Input).value = "my-job"
        dialog.query_one("#slide", Input).value = str(tmp_path / "nope.svs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "does not exist" in str(dialog.query_one("#error").render()))
        assert app.screen is dialog  # still open
        assert dialog.query_one("#key", Input).value == "my-job"  # what was typed is kept
        dialog.query_one("#slide", Input).value = str(slide)
        await pilot.pause()
        assert str(dialog.query_one("#error").render()).strip() == ""  # fixed: no old error
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog)
        await settle(app, pilot)
        assert [j.key for j in app.engine.workflow("alice", "wf0001").jobs] == ["my-job"]
        await app.shutdown()


# ---- 21.4: "terminal too small" follows one resize --------------------------------------------
async def test_too_small_notice_follows_a_single_resize(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert not app.has_class("-too-small")
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert app.has_class("-too-small")
        assert "60×20" in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        assert not app.has_class("-too-small")
        await app.shutdown()


# ---- 21.6 / 22.2: numbers that say what is true -----------------------------------------------
async def test_eta_comes_from_measured_work_and_skipped_tiles_do_not_move_it(tmp_path):
    app, ex, clock = make_app(tmp_path / "data")
    ex.progress["cells"] = (0, 165)
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("w", ("cells", "A")))
        job_id = w.jobs[0].id

        async def report(done: int, at: float) -> None:
            clock.now = T0 + at
            ex.report("cells", done)
            await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_done == done)

        await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_total == 165)
        card = app.query_one(JobCard)
        # 98 background tiles skipped at once: no ETA from that ("ETA 00:00" before).
        await report(98, 1)
        await wait_for(pilot, lambda: "ETA --:--" in str(card.query_one(".times").render()))
        # Then real work: 2 tiles per second for 10 s -> 47 left at 2/s is 00:23.
        for i in range(1, 11):
            await report(98 + 2 * i, 1 + i)
        assert app.rates.rate(job_id, clock.now) == pytest.approx(2.0)
        await wait_for(pilot, lambda: "ETA 00:23" in str(card.query_one(".times").render()))
        assert "2.0/s" in str(card.query_one(".times").render())
        # Idle: the rate decays to 0 over the window and the ETA stops promising.
        clock.now += WINDOW_S + 1
        assert app.rates.rate(job_id, clock.now) == 0.0
        assert app.rates.total(clock.now) == 0.0
        await wait_for(pilot, lambda: "ETA --:--" in str(card.query_one(".times").render()))
        ex.release("cells")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        # A finished card shows how long it ran, not "00:00 · ETA --:--".
        await wait_for(pilot, lambda: str(card.query_one(".times").render()).startswith("ran "))
        await app.shutdown()


async def test_workflow_progress_weighs_jobs_by_their_tiles(tmp_path):
    app, ex, _ = make_app(tmp_path / "data")
    ex.progress = {"small": (10, 10), "cells": (30, 48)}
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("w", ("small", "A"), ("cells", "B")))
        ex.release("small")
        await settle(
            app, pilot, lambda: app.engine.job("alice", w.jobs[0].id).state is JobState.SUCCEEDED
        )
        await settle(app, pilot, lambda: app.engine.job("alice", w.jobs[1].id).tiles_done == 30)
        (row,) = app.query(WorkflowRow)
        # Weighed by tiles, not 50 %: (10 + 30 x 95 %) / 58 (a job's tiles are 95 % of its work)
        assert str(row.query_one(".wf-percent").render()).strip() == "66%"
        ex.release("cells")
        await app.shutdown()


# ---- 21.7 / 22.3 / 22.4: quit, tenant picker, raw markup ---------------------------------------
async def test_quit_asks_at_once_and_a_second_q_confirms_with_a_stopping_notice(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        w = app.engine.submit("alice", spec("w", ("a", "A")))
        await settle(app, pilot, lambda: app.engine.job("alice", w.jobs[0].id).tiles_total > 0)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)  # no pause needed: it is up at once
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.stopping == 1
    assert any("stopping 1 running job" in n.message for n in app.notes)


async def test_tenant_picker_says_which_keys_work(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, TenantDialog)
        keys = str(app.screen.query_one(".keys").render())
        assert "enter" in keys and "esc" in keys
        await app.shutdown()


async def test_without_a_tenant_it_opens_on_one_with_work(tmp_path):
    data = tmp_path / "data"
    app, _, _ = make_app(data, tenant="root")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("carol", spec("hers", ("x", "A")), start=False)
        await app.shutdown()
    app, _, _ = make_app(data, tenant="root")
    app._pick_tenant = True
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.tenant == "carol"
        assert [r.workflow_id for r in app.query(WorkflowRow)] == ["wf0001"]
        await app.shutdown()


async def test_ctrl_c_hint_is_shown_without_raw_markup(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        (note,) = [n for n in app._notifications if "ctrl+q" in n.message]
        assert note.markup  # Textual's own message keeps its markup: "[b]" is bold, not text
        assert "[b]" not in Content.from_markup(note.message).plain
        assert "Press ctrl+q to quit the app" in app.notes[-1].message  # the log has it plain
        await app.shutdown()


# ---- 21.9: conventions ------------------------------------------------------------------------
async def test_filter_copy_open_notes_and_rerun(tmp_path, monkeypatch):
    app, ex, _ = make_app(tmp_path / "data")
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    monkeypatch.setattr("wsitui.tui.app.system_opener", lambda: None)  # as over SSH
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("masks", ("m1", "A")), start=False)
        w = app.engine.submit("alice", spec("cells-run", ("seg", "A"), ("other", "B")))
        await settle(app, pilot)

        await pilot.press("slash", *"m1")
        await settle(app, pilot)
        assert [r.workflow_id for r in app.query(WorkflowRow)] == ["wf0001"]
        await pilot.press("escape")
        await settle(app, pilot)
        assert len(app.query(WorkflowRow)) == 2
        app.query_one("#workflows").focus()
        await pilot.press("j")  # j moves down the workflow list too
        await settle(app, pilot)

        seg = w.jobs[0]
        ex.release("seg")
        await settle(app, pilot, lambda: app.engine.job("alice", seg.id).state.terminal)
        assert selected(app).job.key == "seg"
        await pilot.press("y")
        await pilot.press("Y")
        assert copied == [str(app.engine.results_dir(app.engine.job("alice", seg.id))), seg.id]
        await pilot.press("o")
        assert "results are in" in app.notes[-1].message  # no opener: the path instead

        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        # It says what a rerun does: the tiles done for the same slide and params are reused
        # (it used to promise outputs "replaced", and a rerun that recomputed nothing surprised)
        assert "reusing the tiles" in app.screen.question
        await pilot.press("y")
        await settle(app, pilot, lambda: app.engine.job("alice", seg.id).attempt == 2)
        # The same job, its next attempt (not a copy `seg-2` beside it), and still selected.
        keys = [j.key for j in app.engine.workflow("alice", w.workflow.id).jobs]
        assert keys == ["seg", "other"]
        rerun = app.engine.job("alice", seg.id)
        assert rerun.state in (JobState.PENDING, JobState.RUNNING)
        assert "rerun: attempt 2" in [t.reason for t in app.engine.timeline("alice", seg.id)]
        assert app.notes[-1].message == "rerunning seg: attempt 2"
        assert selected(app).job.key == "seg"

        await pilot.press("N")
        await pilot.pause()
        assert isinstance(app.screen, NotesScreen)
        assert "copied" in " ".join(str(s.render()) for s in app.screen.query("Static"))
        await pilot.press("escape")
        ex.release("other")
        ex.release("seg")
        await app.shutdown()


async def test_start_all_with_nothing_held_says_so(tmp_path):
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("w", ("a", "A")))
        await settle(app, pilot)
        await pilot.press("S")
        assert "nothing held" in app.notes[-1].message
        ex.release("a")
        await app.shutdown()


async def test_help_scrolls_and_says_how_to_close_at_80x24(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        close = app.screen.query_one(".keys")
        assert "esc" in str(close.render()) and close.region.bottom <= 24
        body = app.screen.query_one("#help-body")
        assert body.max_scroll_y > 0  # the rest is reachable by scrolling
        await app.shutdown()


def test_busy_workers_are_drawn_against_max_workers():
    from wsitui.tui.screens.metrics import scaled_sparkline

    assert scaled_sparkline([1, 4, 0, 2], 4).plain == "▃█▁▅"  # 1 of 4 is not full height


async def test_help_lists_the_cohort_tables_sort_keys(tmp_path):
    """`t` / `T` sort a cohort's slides (README) but are the table's own keys, so the help
    built from the app's keys left them out: nothing on screen said how to sort."""
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=100, file=io.StringIO(), record=True, color_system=None)
        console.print(app.screen.query_one("#help-body Static").content)
        text = console.export_text()
        assert "cohort" in text
        for key, what in (("t", "Sort"), ("T", "Reverse sort")):
            assert any(line.split()[:1] == [key] and what in line for line in text.splitlines()), (
                text
            )
        await app.shutdown()


async def test_a_new_workflow_never_takes_a_name_the_tenant_uses(tmp_path):
    # `wsitui run` matches workflows by tenant and name: a second "w" would pass for the
    # config's. The dialog says so and keeps the name for editing; another tenant's is free.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.engine.submit("alice", spec("w", ("a", "A")), start=False)
        app.engine.submit("bob", spec("his", ("x", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("n", "w", "enter")
        await settle(app, pilot)
        error = app.screen.query_one("#error")
        assert error.display and "named 'w'" in str(error.render())
        app.screen.query_one("#name", Input).value = "his"  # bob's name: alice may use it
        await pilot.press("enter")
        await settle(app, pilot)
        names = sorted(w.workflow.name for w in app.engine.workflows("alice"))
        assert names == ["his", "w"]
        await app.shutdown()


async def test_a_new_workflow_name_with_a_bidi_override_is_refused_in_the_dialog(tmp_path):
    # A pasted "\u202e" reversed the rest of the workflow's row in the list; the dialog says
    # why it is refused (as text: the name's "[" is no markup) and keeps the name for editing.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        app.screen.query_one("#name", Input).value = "cohort\u202e[b]3"
        await pilot.press("enter")
        await settle(app, pilot)
        error = app.screen.query_one("#error")
        assert error.display and "'\\u202e'" in str(error.render()), str(error.render())
        assert app.screen.query_one("#name", Input).value == "cohort\u202e[b]3"
        assert app.engine.workflows("alice") == []
        await app.shutdown()


async def test_the_top_bar_counts_waiting_tenants_and_keeps_its_figures_at_80_columns(tmp_path):
    # It listed every waiting tenant by name: at 80 columns the list pushed workers, queue
    # and throughput off the bar, and showed other tenants' names to this one.
    app, _, _ = make_app(tmp_path / "data", max_workers=2, max_active_users=1)
    tenants = ["alice", "bob-the-builder", "carol-from-accounts", "dave-lab-7", "erin-pathology"]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for t in tenants:
            app.engine.submit(t, spec("w", ("x", "A")))
        await settle(app, pilot)
        from wsitui.tui.widgets.topbar import TopBar

        bar = str(app.query_one(TopBar).render())
        assert len(bar) <= 80, bar
        assert "4 waiting" in bar and "workers 1/2" in bar and "queued 4" in bar, bar
        assert not any(t in bar for t in tenants[1:]), bar
        app.tenant = "carol-from-accounts"  # a long name: the bar still fits
        app.tick()
        await settle(app, pilot)
        bar = str(app.query_one(TopBar).render())
        assert len(bar) <= 80 and "workers 1/2" in bar and "queued 4" in bar, bar
        await app.shutdown()


async def test_a_waiting_card_shows_its_place_in_line_at_80_columns(tmp_path):
    # "WAITING for a tenant slot (#1 in" was all a card at 80 columns showed: the place is
    # what a waiting user wants, so it comes first.
    app, _, _ = make_app(tmp_path / "data", max_workers=2, max_active_users=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.engine.submit("alice", spec("w", ("x", "A")))
        app.engine.submit("bob", spec("his", ("x", "A"), ("y", "B")))
        app.tenant = "bob"
        await settle(app, pilot)
        await app._list_workflows()
        await settle(app, pilot)
        text = screen_text(app)
        # The cards say the place in the workflow row's words (they read "#1 in line for a slot").
        assert text.count("WAITING 1st in line") == 2, text
        # The workflow row says it too (it read PENDING), from the engine's admission state.
        assert "WAITING" in text and "1st in line" in text, text
        assert "PENDING" not in text, text
        await app.shutdown()


async def test_a_waiting_workflow_row_follows_its_place_in_line(tmp_path):
    # qa9 #3: the row read PENDING. It says WAITING and the place from the engine's admission
    # state, and follows it when only the queue moves (no event touches its workflow then).
    app, ex, _ = make_app(tmp_path / "data", max_workers=2, max_active_users=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for tenant in ("alice", "bob", "carol"):
            app.engine.submit(tenant, spec("w", ("x", "A")))
        app.engine.submit("carol", spec("v", ("y", "A")))  # selected: the other row is not
        app.tenant = "carol"
        await settle(app, pilot)
        await app._list_workflows()
        await settle(app, pilot)
        rows = [str(r._name.render()) for r in app.query(WorkflowRow)]
        assert all("2nd in line for a tenant slot" in r for r in rows), rows
        ex.release("x")  # alice's job ends: bob is admitted, carol moves up
        await wait_for(pilot, lambda: app.engine.stats().active == ("bob",))
        await settle(app, pilot)
        rows = [str(r._name.render()) for r in app.query(WorkflowRow)]
        assert all("1st in line for a tenant slot" in r for r in rows), rows
        await app.shutdown()
