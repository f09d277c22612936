"""A workflow's progress weighted by the work of its jobs (tiles), not by their count."""

from __future__ import annotations

from collections.abc import Sequence

from wsitui.core.records import Job


def workflow_progress(jobs: Sequence[Job]) -> float:
    """Its jobs' progress (`Job.progress`: tiles, then the final stage) weighted by their tiles.
    A job whose total is not known yet (it has not started) weighs as much as the average known
    job, so a workflow is never 91 % done while its largest job stands at 30/48; it reaches 1.0
    only when every job SUCCEEDED (a job past its last tile still writing its outputs is not
    done)."""
    if not jobs:
        return 0.0
    known = [j.tiles_total for j in jobs if j.tiles_total > 0]
    guess = sum(known) / len(known) if known else 1.0
    done = total = 0.0
    for job in jobs:
        weight = job.tiles_total if job.tiles_total > 0 else guess
        total += weight
        done += weight * job.progress  # 1.0 once SUCCEEDED; 0 while its total is not known
    return done / total if total else 0.0
