"""The top bar's tiles/s never claims 0.0 while jobs finish.

Found by an outside QA round: short masks report all their tiles in one step, and a first jump
is never taken as speed (it may be tiles resumed or skipped), so no rate was ever measured and
the bar read `0.0 tiles/s` while job after job finished. It reads `–` while no rate can be known
and work goes on, and 0.0 only once nothing has run for a whole window (or what runs stalled)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.job_records import job_record
from tests.tui.conftest import make_app
from tests.tui.helpers import screen_text, settle, spec
from wsitui.core.records import Job, JobState
from wsitui.tui.rates import WINDOW_S, Rates

pytestmark = pytest.mark.anyio

T = 1000.0


def _job(state: JobState, done: int, total: int = 10) -> Job:
    return job_record("m", state, tiles_done=done, tiles_total=total)


def test_a_job_that_reports_all_its_tiles_at_once_leaves_the_rate_unknown_not_zero():
    rates = Rates()
    assert rates.total(T) == 0.0  # nothing ever ran: nothing moves
    rates.observe(_job(JobState.RUNNING, 0), T)
    assert rates.total(T + 0.1) is None  # it runs, unmeasured
    rates.observe(_job(JobState.RUNNING, 10), T + 0.5)  # all its tiles in one step
    assert rates.total(T + 0.6) is None
    rates.observe(_job(JobState.SUCCEEDED, 10), T + 0.7)
    assert rates.total(T + 1) is None  # it ended within the window: work went on
    assert rates.total(T + 0.7 + WINDOW_S + 0.1) == 0.0  # a whole window with nothing


def test_a_measured_rate_is_the_sum_and_a_stalled_one_reads_zero():
    rates = Rates()
    job = _job(JobState.RUNNING, 0, total=100)
    rates.observe(job, T)
    rates.observe(replace(job, tiles_done=10), T + 1)  # the first jump: a baseline
    rates.observe(replace(job, tiles_done=20), T + 2)
    assert rates.total(T + 2) == pytest.approx(10.0)
    assert rates.total(T + 2 + WINDOW_S + 1) == 0.0  # it runs, and nothing moved: 0.0


async def test_the_top_bar_says_no_rate_while_short_jobs_finish(tmp_path):
    app, ex, clock = make_app(tmp_path / "data")
    ex.progress = {"m1": (10, 10), "m2": (10, 10)}
    async with app.run_test(size=(120, 40)) as pilot:
        w = app.engine.submit("alice", spec("masks", ("m1", "A"), ("m2", "A")))
        ex.release("m1")
        ex.release("m2")
        ids = [j.id for j in w.jobs]
        await settle(
            app,
            pilot,
            lambda: all(app.engine.job("alice", i).state is JobState.SUCCEEDED for i in ids),
        )
        top = screen_text(app).splitlines()[0]
        assert "│ – tiles/s" in top and "0.0 tiles/s" not in top, top
        clock.now += WINDOW_S + 1  # a whole window with nothing running: nothing moves
        app.tick()
        await settle(app, pilot)
        top = screen_text(app).splitlines()[0]
        assert "│ 0.0 tiles/s" in top, top
        await app.shutdown()
