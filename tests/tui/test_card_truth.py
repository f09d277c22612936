"""What a card or a workflow row says at a glance agrees with the job's stored truth."""

from __future__ import annotations

from wsitui.core.records import Job, JobState
from wsitui.tui.times import times_text


def job(state: JobState, counters: dict[str, int], **kw: object) -> Job:
    return Job(
        "w.j",
        "j",
        "w",
        "t",
        "SEGMENT_CELLS",
        "s.svs",
        "A",
        (),
        {},
        state,
        counters=counters,
        **kw,  # type: ignore[arg-type]
    )


def test_a_finished_job_that_found_no_cells_says_so():
    """A SEGMENT_CELLS job on an empty mask (every tile skipped) and the MEASURE_CELLS after
    it stored cells 0; their cards read "ran 0.1 s · skipped 16" and "ran 0.1 s", as if they
    had found cells like any other."""
    done = {"started_at": 10.0, "finished_at": 10.1}
    assert times_text(
        job(JobState.SUCCEEDED, {"cells": 0, "skipped": 16}, **done), 20.0, None, None
    ) == ("ran 0.1 s · cells 0 · skipped 16")
    assert times_text(job(JobState.SUCCEEDED, {"cells": 0}, **done), 20.0, None, None) == (
        "ran 0.1 s · cells 0"
    )
    # A running job's zero is no news yet (it has not found its first cell).
    running = job(JobState.RUNNING, {"cells": 0}, started_at=10.0)
    assert times_text(running, 15.0, None, None) == "00:05 · ETA --:--"
