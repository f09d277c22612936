"""A workflow's state and progress from running totals of its jobs, so a status is O(1) per
event, not O(jobs)."""

from __future__ import annotations

from wsitui.core.records import Job, JobState, WorkflowState


class Tally:
    """Running totals of one workflow's jobs; the engine adds each snapshot and removes the one
    it replaces."""

    __slots__ = ("jobs", "progress", "runnable", "states")

    def __init__(self) -> None:
        self.jobs = 0
        self.progress = 0.0
        self.runnable = 0  # PENDING and not blocked
        self.states: dict[JobState, int] = dict.fromkeys(JobState, 0)

    def add(self, job: Job, sign: int) -> None:
        self.jobs += sign
        self.progress += sign * job.progress
        self.states[job.state] += sign
        self.runnable += sign * (job.state is JobState.PENDING and not job.blocked)

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
        # Clamp: the running sum accumulates float error over many updates.
        progress = max(0.0, min(1.0, self.progress / n)) if n else 0.0
        if state is WorkflowState.SUCCEEDED:
            progress = 1.0
        return state, progress
