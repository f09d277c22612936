"""A workflow's progress weighted by the work of its jobs (tiles), not by their count."""

from __future__ import annotations

from collections.abc import Sequence

from wsitui.core.records import Job, JobState, WorkflowState


def workflow_progress(jobs: Sequence[Job]) -> float:
    """Tiles done over tiles to do. A job whose total is not known yet (it has not started)
    weighs as much as the average known job, so a workflow is never 91 % done while its largest
    job stands at 30/48 nor 100 % before its last job has started."""
    if not jobs:
        return 0.0
    known = [j.tiles_total for j in jobs if j.tiles_total > 0]
    guess = sum(known) / len(known) if known else 1.0
    done = total = 0.0
    for job in jobs:
        weight = job.tiles_total if job.tiles_total > 0 else guess
        total += weight
        if job.state is JobState.SUCCEEDED:
            done += weight
        elif job.tiles_total > 0:
            done += min(job.tiles_done, job.tiles_total)
    return done / total if total else 0.0


def percent_text(progress: float, *, finished: bool) -> str:
    """A whole percentage, 100 % only when `finished`: a workflow whose last job has done all
    its tiles but still writes its outputs (or is 99.6 % done) read "RUNNING 100%"."""
    whole = round(max(0.0, min(1.0, progress)) * 100)
    return f"{whole if finished else min(whole, 99)}%"


def workflow_percent(state: WorkflowState, progress: float) -> str:
    return percent_text(progress, finished=state is WorkflowState.SUCCEEDED)
