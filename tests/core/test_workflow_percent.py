"""A workflow's percent: 100 % only when every job SUCCEEDED, and a job past its last tile
still writing its outputs is not done (it read 100 % of its tiles as all of its work, so a
workflow sat at 99-100 % through a long final write, and a face rounding 99.6 % read 100 %)."""

from __future__ import annotations

from dataclasses import replace

from tests.job_records import job_record
from wsitui.core.phase import job_phases
from wsitui.core.records import TILES_SHARE, Job, JobState, whole_percent
from wsitui.core.tally import Tally, workflow_progress
from wsitui.session.summary import workflow_state


def _job(i: int, state: JobState, done: int = 10, total: int = 10, stage: str = "") -> Job:
    return job_record(
        f"j{i}", state, branch=f"b{i}", tiles_done=done, tiles_total=total, stage=stage
    )


def _percents(jobs: list[Job]) -> tuple[int, int, int]:
    """What the engine (events, `wsitui run`'s bars, the TUI), `wsitui status` and a tally
    built afresh read."""
    tally = Tally()
    for job in jobs:
        tally.add(job, +1)
    engine = tally.summary()[1]
    status = workflow_state(jobs, job_phases(jobs))[1]
    return whole_percent(engine), whole_percent(status), whole_percent(workflow_progress(jobs))


def test_whole_percent_rounds_down_and_reads_100_only_when_done():
    assert [whole_percent(p) for p in (0.0, 0.29, 0.5, 0.996, 0.99999, 1.0)] == [
        0,
        29,
        50,
        99,
        99,
        100,
    ]


def test_a_job_writing_its_outputs_after_its_last_tile_is_not_done():
    writing = _job(0, JobState.RUNNING, stage="writing outputs")
    assert writing.progress == TILES_SHARE < 1.0
    assert _percents([writing]) == (95, 95, 95)
    assert _percents([replace(writing, state=JobState.SUCCEEDED)]) == (100, 100, 100)


def test_a_workflow_never_reads_100_before_its_last_job_succeeded():
    # 19 jobs done, the 20th past its last tile: it read 100 % (20/20 by the engine; 99.75 %
    # rounded by the TUI) while the last job still wrote its outputs.
    jobs = [_job(i, JobState.SUCCEEDED) for i in range(19)]
    last = _job(19, JobState.RUNNING, stage="writing outputs")
    assert _percents([*jobs, last]) == (99, 99, 99)
    assert _percents([*jobs, replace(last, state=JobState.SUCCEEDED)]) == (100, 100, 100)
    # A failed last job with every tile read is not 100 % either.
    assert max(_percents([*jobs, replace(last, state=JobState.FAILED)])) < 100


def test_progress_through_the_tiles_still_moves_with_them():
    half = _job(0, JobState.RUNNING, done=5)
    assert half.progress == TILES_SHARE * 0.5
    assert _percents([half]) == (47, 47, 47)


def test_jobs_weigh_by_their_tiles_and_an_uncounted_job_as_an_average_one():
    mask = _job(0, JobState.SUCCEEDED, done=192, total=192)
    cells = _job(1, JobState.RUNNING, done=23, total=55)
    # (192 + 23 x 95 %) / 247, not (100 % + 40 %) / 2 jobs (70 %, what status said).
    assert _percents([mask, cells]) == (86, 86, 86)
    waiting = _job(2, JobState.PENDING, done=0, total=0)  # weighs (192 + 55) / 2 tiles
    assert _percents([mask, cells, waiting]) == (57, 57, 57)


def test_a_tally_kept_over_many_updates_reads_what_one_built_afresh_reads():
    tally, jobs = Tally(), [_job(i, JobState.PENDING, done=0, total=0) for i in range(3)]
    for job in jobs:
        tally.add(job, +1)
    for step in range(1, 1001):  # every update replaces a snapshot, as the engine does
        i = step % 3
        new = replace(jobs[i], state=JobState.RUNNING, tiles_done=step // 3, tiles_total=997)
        tally.add(jobs[i], -1)
        tally.add(new, +1)
        jobs[i] = new
    assert tally.progress() == workflow_progress(jobs)
    assert tally.progress() == sum(997 * j.progress for j in jobs) / (3 * 997)
