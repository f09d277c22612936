"""The screen at small sizes (80x24 over SSH, and a terminal resized below it) still says what
to do: a card's key hint is never cut, help stays readable, the footer has no half-words."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets._footer import FooterKey

from tests.tui.conftest import make_app
from tests.tui.helpers import card_text, screen_text, settle, spec, start_one_job, wait_for
from tests.tui.test_cohort_table import held_cohort
from wsitui.core.records import JobState
from wsitui.tui.screens.detail import JobDetailScreen
from wsitui.tui.screens.dialogs import QuitDialog
from wsitui.tui.widgets.lanes import JobCard
from wsitui.tui.widgets.line import LiveLine

pytestmark = pytest.mark.anyio


def three_lanes(app):
    """Lane A runs, B's `down` is blocked by the canceled `up`, C's `later` is held."""
    w = app.engine.submit(
        "alice",
        spec("badges", ("run", "A"), ("up", "B"), ("down", "B", ("up",)), ("free", "C")),
    )
    ids = {j.key: j.id for j in w.jobs}
    app.engine.cancel("alice", ids["up"])
    later = spec("x", ("later", "C")).jobs[0]
    app.engine.add_job("alice", w.workflow.id, later, start=False)
    return w.workflow.id, ids


async def three_lanes_shown(app, pilot) -> dict[str, str]:
    """`three_lanes` on screen with lane A's job running; the job ids by key."""
    await settle(app, pilot)
    _, ids = three_lanes(app)
    await settle(app, pilot, lambda: app.engine.stats().running == 1)
    return ids


async def bob_waits(app, pilot) -> None:
    """alice's job runs in the one tenant slot; bob's waits for it."""
    await settle(app, pilot)
    app.engine.submit("alice", spec("hers", ("a", "A")))
    app.engine.submit("bob", spec("his", ("x", "A")))
    await settle(app, pilot, lambda: app.engine.stats().waiting == ("bob",))


def card(app, key: str) -> JobCard:
    return next(c for c in app.query(JobCard) if c.job.key == key)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)])
async def test_held_and_blocked_cards_show_their_key_at_every_size(tmp_path, size):
    # At 80x24 with three lanes "HELD not started yet: press s" lost "press s", and "BLOCKED
    # upstream up canceled; retry it to go on" lost the retry (at 120x40 too): the card said
    # what was wrong but not the key that fixes it.
    app, _, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=size) as pilot:
        await three_lanes_shown(app, pilot)
        shown = screen_text(app)
        assert "press s to start" in shown
        assert "r retries up" in shown
        assert card_text(card(app, "down"))[0].startswith("BLOCKED upstream up")
        assert card_text(card(app, "later")) == ("HELD", "press s to start")


async def test_r_on_a_blocked_card_retries_the_upstream_it_names(tmp_path):
    app, _, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=(80, 24)) as pilot:
        ids = await three_lanes_shown(app, pilot)
        app._board.select(ids["down"], focus=True)
        await pilot.press("r")
        await settle(app, pilot)
        up = app.engine.job("alice", ids["up"])
        assert up.state is JobState.PENDING and up.enqueued and up.attempt == 2
        assert "BLOCKED" not in card_text(card(app, "down"))[0]


async def test_s_on_a_blocked_card_says_it_is_blocked_and_which_key_goes_on(tmp_path):
    # `s` on a BLOCKED card said "down is already queued", as if it would run: it cannot
    # until its upstream is retried. It says so, with the key its card shows; nothing moves.
    app, _, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=(80, 24)) as pilot:
        ids = await three_lanes_shown(app, pilot)
        app._board.select(ids["down"], focus=True)
        await pilot.press("s")
        await settle(app, pilot)
        said = list(app._notifications)[-1]
        assert said.message == "down is blocked: upstream up canceled; r retries up"
        assert said.severity == "warning"
        assert app.engine.job("alice", ids["up"]).state is JobState.CANCELED
        app._board.select(ids["free"], focus=True)  # a queued one still says so
        await pilot.press("s")
        await settle(app, pilot)
        assert list(app._notifications)[-1].message == "free is already queued"


async def test_a_long_workflow_name_is_cut_before_its_counts_at_80_columns(tmp_path):
    # A 200-character name with spaces: the line under the list wrapped at a space and
    # showed "🧪 ünïcödé 工作流" alone, a shorter name with no "…", and no job count, state or
    # percent. The name is cut with "…"; its counts stay whole.
    app, _, _ = make_app(tmp_path / "data")
    name = "🧪 ünïcödé 工作流 " + "x" * 150 + " end"
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.engine.submit("alice", spec(name, ("a", "A")), start=False)
        await settle(app, pilot)
        line = app.query_one("#lanes-title", LiveLine)
        shown = str(line.render())
        assert shown.startswith("🧪 ünïcödé 工作流 xxx") and "… · 1 job · PENDING 0%" in shown
        assert Text(shown).cell_len <= line.content_region.width, shown


class OneLine(App[None]):
    CSS = "LiveLine { width: 20; }"

    def compose(self) -> ComposeResult:
        yield LiveLine(sep=" · ")


async def test_a_card_clock_line_too_long_drops_whole_parts():
    # A running card at 80x24 read "00:45 · ETA 00:42 ·" (cut mid-part, words hidden by the
    # wrap), then "00:45 · ETA 00:42 ·…" with an ellipsis: whole parts go, one " …" says so.
    app = OneLine()
    async with app.run_test(size=(40, 3)) as pilot:
        line = app.query_one(LiveLine)
        line.show(Text("00:45 · ETA 00:42 · 2.0/s · cells 2.5k"))
        await pilot.pause()
        assert str(line.render()) == "00:45 · ETA 00:42 …"
        line.show(Text("00:45 · ETA 00:42"))
        await pilot.pause()
        assert str(line.render()) == "00:45 · ETA 00:42"


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (45, 12)])
async def test_footer_shows_whole_keys_help_and_quit_first(tmp_path, size):
    # At 60x20 the footer ended in "? He" (Textual cuts the row at the edge) and q was gone.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        palette = footer.index("▏^p palette")
        shown = [
            k for k in app.query(FooterKey) if k.display and "-command-palette" not in k.classes
        ]
        assert [k.description for k in shown][-2:] == ["Help", "Quit"]
        for key in shown:
            assert f"{key.key_display} {key.description}" in footer[:palette]
        assert footer[:palette].rstrip().endswith("q Quit")
        if size[0] >= 80:
            assert len(shown) == 7  # the everyday keys at 80 columns, as before


async def test_help_resized_small_stays_whole_or_says_how_big_it_must_be(tmp_path):
    # Help open while the terminal shrank: at 40x8 its close line was cut off, at 30x10
    # "closes" was; below 80x24 the box must still show whole, scrolled, or say what it needs.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await settle(app, pilot)
        for size in [(60, 16), (50, 12), (40, 10)]:
            await pilot.resize_terminal(*size)
            await settle(app, pilot)
            shown = screen_text(app)
            assert "wsitui keys" in shown, size
            assert "↑↓ scroll · esc, q or ? closes" in shown, size
        for w, h in [(40, 8), (30, 10)]:
            await pilot.resize_terminal(w, h)
            await settle(app, pilot)
            shown = screen_text(app)
            assert f"for help: {w}×{h}" in shown and "needs 40×10" in shown, (w, h)
            assert "esc closes" in shown and "wsitui keys" not in shown, (w, h)
        await pilot.resize_terminal(80, 24)
        await settle(app, pilot)
        assert "↑↓ scroll · esc, q or ? closes" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert len(app.screen_stack) == 1


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_cohort_title_drops_whole_keys_never_half_of_one(tmp_path, size):
    # At 80 columns a held cohort's title ended in "· enter de" (and "v viewer" was gone).
    async with held_cohort(tmp_path, size) as (app, _pilot, _table, _wf, _ex):
        title = next(line for line in screen_text(app).splitlines() if "S starts" in line)
        title = title.strip()
        parts = title.removesuffix(" …").split(" · ")
        expected = "TCGA-BRCA-cohort-2024 · 0/8 slides · ETA – · 8 held: S starts · t/T sort · "
        expected += "/ filter · enter details · v viewer"
        assert parts == expected.split(" · ")[: len(parts)]
        assert title.endswith(" …") == (len(parts) < 8)
        if size == (120, 40):
            assert len(parts) == 8


async def test_top_bar_below_80_columns_drops_whole_parts(tmp_path):
    # At 60x20 with a tenant waiting the bar read "... │ workers 2/3 │": the wrap had hidden
    # the queue count and left its separator.
    app, _, _ = make_app(tmp_path / "data", tenant="bob", max_active_users=1)
    async with app.run_test(size=(60, 20)) as pilot:
        await bob_waits(app, pilot)
        top = screen_text(app).splitlines()[0].strip()
        assert top == "tenant bob │ active 1/1 · 1 waiting │ workers 1/4 …"
        await pilot.resize_terminal(80, 24)
        await settle(app, pilot)
        top = screen_text(app).splitlines()[0].strip()
        # alice's job runs, not measured yet: no rate is known ("–"), not "0.0"
        assert top == "tenant bob │ active 1/1 · 1 waiting │ workers 1/4 │ queued 1 │ – tiles/s"


async def test_metrics_keeps_each_figure_with_its_label_at_80_columns(tmp_path):
    # At 80x24 a line ended in "tenants active" and the next began "1 waiting 1".
    app, _, _ = make_app(tmp_path / "data", tenant="bob", max_active_users=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await bob_waits(app, pilot)
        await pilot.press("m")
        await settle(app, pilot)
        shown = screen_text(app)
        assert "tenants active 1 waiting 1" in shown
        assert "jobs ended 0 (0 failed)" in shown


async def test_quit_question_follows_the_jobs_that_run(tmp_path):
    # Asked while two jobs ran, it still said "2 job(s) running" after both had ended.
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        job_id = await start_one_job(app, pilot)
        await pilot.press("q")
        await settle(app, pilot)
        assert isinstance(app.screen, QuitDialog)
        assert "1 job(s) running. Quit?" in screen_text(app)
        ex.release("run")
        await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
        await wait_for(pilot, lambda: "No job runs now. Quit?" in screen_text(app))
        assert "job(s) running" not in screen_text(app)


async def test_the_filter_says_its_keys_while_one_types(tmp_path):
    # Its placeholder said "(esc clears)" until the first letter; then no key was on screen.
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.engine.submit("alice", spec("w", ("a", "A")), start=False)
        await settle(app, pilot)
        await pilot.press("slash", *"zz")
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "esc Clear" in footer and "⏎ Done" in footer
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.filter_text == "" and not app.query_one("#filter").display
        assert "a · mask" in screen_text(app)  # the cards are back


async def _first_fails_beside_a_held_job(app, ex, pilot, workflow) -> None:
    """Submit `workflow` for alice with a held job `later` added to it; its first job fails."""
    await settle(app, pilot)
    w = app.engine.submit("alice", workflow)
    app.engine.add_job("alice", w.workflow.id, spec("x", ("later", "B")).jobs[0], start=False)
    job_id = w.jobs[0].id
    await settle(app, pilot, lambda: app.engine.job("alice", job_id).tiles_total > 0)
    ex.release(w.jobs[0].key, "fail")
    await settle(app, pilot, lambda: app.engine.job("alice", job_id).state.terminal)
    await settle(app, pilot)


async def test_a_workflow_that_is_not_failed_still_says_a_job_failed(tmp_path):
    # A held job keeps a workflow PENDING after another failed: its row and title said only
    # "PENDING 50%", with nothing to tell a failure was in it.
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(100, 30)) as pilot:
        await _first_fails_beside_a_held_job(app, ex, pilot, spec("w", ("a", "A")))
        shown = screen_text(app)
        assert "w wf0001 · 2 jobs · 1 failed" in shown
        assert "w · 2 jobs · PENDING 0% · 1 failed" in shown


async def test_the_keys_a_detail_names_act_on_its_job(tmp_path):
    # The detail of a held job said "press s to start", and s did nothing there.
    app, _, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=(80, 24)) as pilot:
        ids = await three_lanes_shown(app, pilot)
        app._board.select(ids["down"], focus=True)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, JobDetailScreen)
        assert "BLOCKED upstream up canceled: r retries up" in screen_text(app)
        await pilot.press("r")
        await settle(app, pilot)
        assert app.engine.job("alice", ids["up"]).attempt == 2
        await pilot.press("escape")
        await settle(app, pilot)
        later = card(app, "later").job.id
        app._board.select(later, focus=True)
        await pilot.press("enter")
        await settle(app, pilot)
        assert "HELD press s to start" in screen_text(app)
        assert "s Start" in screen_text(app).splitlines()[-1]
        await pilot.press("s")
        await settle(app, pilot)
        assert app.engine.job("alice", later).enqueued
        assert isinstance(app.screen, JobDetailScreen)  # still on the detail, now updated
        assert "HELD" not in screen_text(app).splitlines()[1]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_a_workflow_row_keeps_its_failures_at_80_columns(tmp_path, size):
    # At 80x24 the row's name column read "alpha wf8f933bb6 · 4 jobs · 1…": the failure was
    # the part cut, while the id stayed. Whole parts go first (the id, then the job count);
    # the failure count stays.
    app, ex, _ = make_app(tmp_path / "data")
    async with app.run_test(size=size) as pilot:
        workflow = spec("alpha-masks", ("a", "A"), ("b", "B"), ("c", "C"))
        await _first_fails_beside_a_held_job(app, ex, pilot, workflow)
        row = next(line for line in screen_text(app).splitlines() if "alpha-masks" in line)
        assert "· 1 failed" in row, row
        assert "…" not in row, row
        if size[0] == 200:
            assert "alpha-masks wf0001 · 4 jobs · 1 failed" in row, row


def test_a_workflow_rows_name_drops_whole_parts_and_keeps_its_failures():
    from wsitui.tui.widgets.workflows import fit_name

    parts, keep = [" wf8f933bb6", " · 4 jobs"], " · 1 failed"
    assert fit_name("alpha", parts, keep, 80).plain == "alpha wf8f933bb6 · 4 jobs · 1 failed"
    assert fit_name("alpha", parts, keep, 29).plain == "alpha · 4 jobs · 1 failed"
    assert fit_name("alpha", parts, keep, 20).plain == "alpha · 1 failed"
    assert fit_name("a-long-workflow-name", parts, keep, 24).plain == "a-long-workf… · 1 failed"
    assert fit_name("a-long-workflow-name", parts, "", 12).plain == "a-long-work…"
    assert fit_name("a-long-workflow-name", parts, keep, 12).plain == "a-long-work…"  # too narrow


def _lane_order(app) -> list[str]:
    return [c.job.key for c in sorted(app.query(JobCard), key=lambda c: (c.column, c.row))]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_a_retried_job_moves_to_the_back_of_its_lane_on_screen(tmp_path, size):
    # A retried job enters its lane at the back (README), but the board kept its card where
    # it was: lane A read a1 (PENDING), a2 (RUNNING), a3 while a3 would run before a1. The
    # board was laid out again only when the set of jobs changed, never their order.
    app, ex, _ = make_app(tmp_path / "data", max_workers=1)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        w = app.engine.submit("alice", spec("w", ("a1", "A"), ("a2", "A"), ("a3", "A")))
        ids = {j.key: j.id for j in w.jobs}
        await settle(app, pilot, lambda: app.engine.job("alice", ids["a1"]).tiles_total > 0)
        ex.release("a1", "fail")
        await settle(app, pilot, lambda: app.engine.job("alice", ids["a2"]).tiles_total > 0)
        await settle(app, pilot)
        assert _lane_order(app) == ["a1", "a2", "a3"]
        app.engine.retry("alice", ids["a1"])
        await settle(app, pilot)
        assert _lane_order(app) == ["a2", "a3", "a1"]  # the order they run in
        assert "behind a2" in card_text(card(app, "a1"))[0]
