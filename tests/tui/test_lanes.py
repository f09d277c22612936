"""Long lanes: the board draws a window of cards around each lane's running job, so a workflow
of thousands of jobs opens in seconds (2,000 cards took ~30 s to lay out, 2 s a key), and the
window follows the lane as it runs."""

from __future__ import annotations

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready, screen_text, settle, spec
from wsitui.core.records import Job, JobState
from wsitui.tui.widgets.lanes import MAX_CARDS, JobCard, LaneBoard, LaneColumn, lane_windows
from wsitui.tui.widgets.workflows import WorkflowList


def lane(n: int, done: int, branch: str = "A") -> list[Job]:
    """`n` jobs of one lane: the first `done` ended, the next one running, the rest queued."""
    jobs = []
    for i in range(n):
        state = (
            JobState.SUCCEEDED if i < done else JobState.RUNNING if i == done else JobState.PENDING
        )
        started = float(i) if i <= done else None
        jobs.append(
            Job(
                f"w.{branch}{i}",
                f"{branch}{i}",
                "w",
                "t",
                "TISSUE_MASK",
                "s.svs",
                branch,
                (),
                {},
                state,
                started_at=started,
                seq=i,
            )
        )
    return jobs


def test_a_short_lane_shows_every_job():
    ((branch, window, before, after),) = lane_windows(lane(30, 5))
    assert (branch, len(window), before, after) == ("A", 30, 0, 0)


def test_a_long_lane_shows_its_running_job_and_the_window_moves_in_steps():
    starts = set()
    for done in range(0, 1000, 7):
        ((_, window, before, after),) = lane_windows(lane(1000, done))
        keys = [j.key for j in window]
        assert len(window) == MAX_CARDS and before + len(window) + after == 1000
        assert f"A{done}" in keys  # the running job is always on screen...
        assert keys.index(f"A{done}") >= min(2, done)  # ...with the jobs just before it
        starts.add(before)
    assert len(starts) < 1000 // 7 // 10  # laid out again every half window, not every job


def test_many_lanes_share_the_cards():
    jobs = [j for b in "ABCDEFGHIJKLMNOPQRST" for j in lane(100, 50, b)]
    windows = lane_windows(jobs)
    assert len(windows) == 20 and sum(len(w) for _, w, _, _ in windows) <= MAX_CARDS
    for branch, window, _, _ in windows:
        assert f"{branch}50" in [j.key for j in window]


@pytest.mark.anyio
async def test_a_workflow_of_2000_jobs_opens_with_a_window_of_cards(tmp_path):
    app, _, _ = make_app(tmp_path / "data")
    jobs = [(f"j{i:04d}", f"b{i % 20}") for i in range(2000)]
    async with app.run_test(size=(80, 24)) as pilot:
        await app_ready(app)
        app.engine.submit("alice", spec("huge", *jobs), start=False)
        await settle(app, pilot)
        cards = app.query(JobCard)
        assert 0 < len(cards) <= MAX_CARDS
        more = [str(label.render()) for label in app.query(".lane-more")]
        assert more == ["… 90 more; / finds one"] * 20  # at each lane's end, below its cards
        await pilot.press("tab", "j", "l", "j")  # the highlight moves; only it is restyled
        await settle(app, pilot)
        highlighted = [c for c in app.query(JobCard) if c.has_class("-selected")]
        assert [c.job.key for c in highlighted] == ["j0041"] and highlighted[0].has_focus
        await pilot.press("slash", *"j1999", "enter")  # a job left out is found by the filter
        await settle(app, pilot)
        assert [c.job.key for c in app.query(JobCard)] == ["j1999"]
        await app.shutdown()


def _lanes_on_screen(app) -> list[str]:
    return [b for b in "ABCDEF" if f"branch {b}" in screen_text(app)]


@pytest.mark.anyio
async def test_lanes_that_do_not_fit_keep_their_width_and_the_selected_card_on_screen(tmp_path):
    """Four lanes at 80 columns were each as wide as the screen: branch A alone showed, with
    nothing to say three more existed; and after a resize from 200 columns the highlighted
    card (the one the keys act on) could be scrolled out of sight."""
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(200, 50)) as pilot:
        await app_ready(app)
        jobs = [(f"j{i}", "ABCDEF"[i % 4]) for i in range(8)]
        app.engine.submit("alice", spec("w", *jobs), start=False)
        await settle(app, pilot)
        assert _lanes_on_screen(app) == list("ABCD")
        await pilot.press("tab", "l", "l", "l")  # the first card of branch D
        await settle(app, pilot)
        board = app.query_one(LaneBoard)
        assert board.selected is not None and board.selected.endswith(".j3")
        await pilot.resize_terminal(80, 24)
        await settle(app, pilot)
        columns = list(app.query(LaneColumn))
        assert all(26 <= c.outer_size.width < 40 for c in columns), [c.outer_size for c in columns]
        assert len(_lanes_on_screen(app)) == 3  # three whole lanes, and a way to the fourth
        assert "branch D" in screen_text(app) and "j3 · mask" in screen_text(app)
        await pilot.press("h", "h", "h")
        await settle(app, pilot)
        assert board.selected.endswith(".j0") and "branch A" in screen_text(app)
        await pilot.resize_terminal(200, 50)
        await settle(app, pilot)
        assert _lanes_on_screen(app) == list("ABCD")
        assert all(
            c.outer_size.width >= 45 for c in app.query(LaneColumn)
        )  # the width shared again


@pytest.mark.anyio
async def test_tab_goes_between_the_workflow_list_and_the_highlighted_card(tmp_path):
    """tab walked card by card (40 presses through a 40-job workflow before the list), and
    coming back from the list highlighted the first card instead of the one left."""
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(120, 40)) as pilot:
        await app_ready(app)
        jobs = [(f"j{i}", "ABC"[i % 3]) for i in range(9)]
        app.engine.submit("alice", spec("w", *jobs), start=False)
        await settle(app, pilot)
        board = app.query_one(LaneBoard)
        assert isinstance(app.focused, WorkflowList)
        await pilot.press("tab")
        assert isinstance(app.focused, JobCard) and app.focused.job.key == "j0"
        await pilot.press("l", "j")  # branch B's second card
        await settle(app, pilot)
        assert board.selected is not None and board.selected.endswith(".j4")
        await pilot.press("tab")
        assert isinstance(app.focused, WorkflowList)
        assert board.selected.endswith(".j4")
        await pilot.press("tab")
        assert isinstance(app.focused, JobCard) and app.focused.job.key == "j4"
        await pilot.press("shift+tab")
        assert isinstance(app.focused, WorkflowList)
        await pilot.press("shift+tab")
        assert isinstance(app.focused, JobCard) and app.focused.job.key == "j4"


@pytest.mark.anyio
async def test_keys_typed_faster_than_the_focus_moves_each_move_the_highlight(tmp_path):
    """`l l l` sent at once (a burst over SSH, or a held key) moved one lane: each key went
    to the card that still had the focus, and each moved from that card to the same one."""
    app, _, _ = make_app(tmp_path / "data")
    async with app.run_test(size=(200, 50)) as pilot:
        await app_ready(app)
        jobs = [(f"j{i}", "ABCDE"[i % 5]) for i in range(15)]
        app.engine.submit("alice", spec("w", *jobs), start=False)
        await settle(app, pilot)
        await pilot.press("tab")
        card = app.focused
        assert isinstance(card, JobCard) and card.job.key == "j0"
        # The keys' actions, all run on the card that has the focus before it loses it (a
        # card's focus() moves the focus later, when the app next runs its callbacks).
        for dx, dy in [(1, 0), (1, 0), (1, 0), (0, 1), (0, 1)]:
            card.action_move(dx, dy)
        await settle(app, pilot)
        board = app.query_one(LaneBoard)
        assert board.selected is not None and board.selected.endswith(".j13")  # D, third
        assert isinstance(app.focused, JobCard) and app.focused.job.key == "j13"
