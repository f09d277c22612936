"""A workflow's state and progress from running totals of its jobs, so a status is O(1) per
event, not O(jobs).

The one rule for a workflow's progress, read by every face (the TUI, `wsitui run`'s bars,
`wsitui status` and `--json`, the `workflow_progress` event): its jobs' progress
(`Job.progress`: tiles, then the final stage) weighted by their tiles, not by their count. A
job whose tiles are not counted yet (it has not started) weighs as much as the average counted
job, so a workflow is never 91 % done while its largest job stands at 30/48. The totals are
whole numbers, so a tally kept over thousands of updates reads exactly what one built afresh
from the same jobs reads (`workflow_progress`).
"""

from __future__ import annotations

from collections.abc import Iterable

from wsitui.core.records import TILES_SHARE, Job, JobState, WorkflowState


class Tally:
    """Running totals of one workflow's jobs; the engine adds each snapshot and removes the one
    it replaces."""

    __slots__ = (
        "counted",
        "counted_tiles",
        "jobs",
        "runnable",
        "states",
        "tiles_read",
        "tiles_succeeded",
        "uncounted_succeeded",
    )

    def __init__(self) -> None:
        self.jobs = 0
        self.runnable = 0  # PENDING and not blocked
        self.states: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self.counted = 0  # jobs whose tiles are counted (tiles_total > 0)
        self.counted_tiles = 0  # their tiles
        self.tiles_read = 0  # tiles done by counted jobs that have not SUCCEEDED
        self.tiles_succeeded = 0  # tiles of counted jobs that SUCCEEDED
        self.uncounted_succeeded = 0  # SUCCEEDED jobs with no tiles

    def add(self, job: Job, sign: int) -> None:
        self.jobs += sign
        self.states[job.state] += sign
        self.runnable += sign * (job.state is JobState.PENDING and not job.blocked)
        succeeded = job.state is JobState.SUCCEEDED
        if job.tiles_total > 0:
            self.counted += sign
            self.counted_tiles += sign * job.tiles_total
            if succeeded:
                self.tiles_succeeded += sign * job.tiles_total
            else:
                self.tiles_read += sign * max(0, min(job.tiles_done, job.tiles_total))
        elif succeeded:
            self.uncounted_succeeded += sign

    def progress(self) -> float:
        """Its jobs' `Job.progress` weighted by their tiles, in [0, 1]: a counted job weighs
        its tiles (done: `TILES_SHARE` of each tile read, all of them once it SUCCEEDED), one
        not counted yet the average counted job (0 done, all once it SUCCEEDED). 1.0 only when
        every job SUCCEEDED: a job past its last tile still writing its outputs is not done."""
        if not self.jobs:
            return 0.0
        guess = self.counted_tiles / self.counted if self.counted else 1.0
        total = self.counted_tiles + guess * (self.jobs - self.counted)
        done = (
            TILES_SHARE * self.tiles_read + self.tiles_succeeded + guess * self.uncounted_succeeded
        )
        if self.states[JobState.SUCCEEDED] == self.jobs:
            return 1.0
        return max(0.0, min(1.0, done / total)) if total > 0 else 0.0

    def summary(self) -> tuple[WorkflowState, float]:
        """The workflow's state and its progress in [0, 1]."""
        n, states = self.jobs, self.states
        if states[JobState.RUNNING]:
            state = WorkflowState.RUNNING
        elif n and states[JobState.SUCCEEDED] == n:
            state = WorkflowState.SUCCEEDED
        elif self.runnable or not n:
            state = WorkflowState.PENDING
        elif states[JobState.FAILED]:
            state = WorkflowState.FAILED
        else:
            state = WorkflowState.CANCELED
        return state, self.progress()


def workflow_progress(jobs: Iterable[Job]) -> float:
    """A workflow's progress from its jobs' snapshots: what the engine's running tally reads."""
    tally = Tally()
    for job in jobs:
        tally.add(job, +1)
    return tally.progress()
