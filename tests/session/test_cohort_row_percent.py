"""A cohort slide's row reads its percent by the workflow rule (core/tally.py: its jobs weigh
their tiles), as every face reads a workflow's: a mask done at 192/192 and cells at 23/55
read 69 % (the jobs averaged by count) beside tiles 215/247."""

from __future__ import annotations

from dataclasses import replace

from tests.job_records import job_record
from wsitui.core.records import Job, JobState, whole_percent
from wsitui.core.tally import workflow_progress
from wsitui.session.cohort_rows import slide_rows

INDEX = {"template": ["mask", "cells"], "slides": [{"id": "s1", "path": "s1.svs"}]}


def _job(key: str, state: JobState, done: int, total: int) -> Job:
    return job_record(
        f"s1-{key}", state, branch="s1", slide="s1.svs", tiles_done=done, tiles_total=total
    )


def test_a_slides_percent_weighs_its_jobs_by_their_tiles():
    chain = [_job("mask", JobState.SUCCEEDED, 192, 192), _job("cells", JobState.RUNNING, 23, 55)]
    (row,) = slide_rows(INDEX, chain)
    assert (row.tiles_done, row.tiles_total) == (215, 247)
    assert row.progress == workflow_progress(chain)
    assert whole_percent(row.progress) == 86
    done = [chain[0], replace(chain[1], state=JobState.SUCCEEDED, tiles_done=55)]
    (row,) = slide_rows(INDEX, done)
    assert row.progress == 1.0
