"""Long lanes: the board draws a window of cards around each lane's running job, so a workflow
of thousands of jobs opens in seconds (2,000 cards took ~30 s to lay out, 2 s a key), and the
window follows the lane as it runs."""

from __future__ import annotations

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready, settle, spec
from wsitui.core.records import Job, JobState
from wsitui.tui.widgets.lanes import MAX_CARDS, JobCard, lane_windows


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
